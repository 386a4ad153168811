"""One deletion rule: ``delete_job`` and the automatic clean-up judge a job alike, liveness included."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from jobcore import Jobs
from jobcore.retention import auto_clean

OLD = "2026-01-01T00:00:00.000Z"


@pytest.fixture
def jobs(job_root: Path, monkeypatch: pytest.MonkeyPatch) -> Jobs:
    monkeypatch.setenv("AGENT_JOBS_RETENTION", "1d")
    return Jobs(job_root)


def edit_state(root: Path, job_id: str, **fields: object) -> None:
    path = root / job_id / "state.json"
    state = json.loads(path.read_text())
    state.update(fields)
    path.write_text(json.dumps(state))


def clean_up(root: Path) -> list[str]:
    return auto_clean(root, force=True, budget_s=60)


def test_an_old_job_whose_process_lives_is_kept_by_both(jobs: Jobs, job_root: Path) -> None:
    job_id = jobs.run(command="sleep 30 & true", wait_seconds=10).job_id
    edit_state(job_root, job_id, finished_at=OLD)
    by_age = jobs.delete(finished_older_than="1d", dry_run=True).jobs
    assert [(j.job_id, j.action, j.reason) for j in by_age] == [(job_id, "skipped", "alive")]
    assert clean_up(job_root) == []
    jobs.kill(job_id=job_id, signal="SIGKILL")
    assert clean_up(job_root) == [job_id]


def test_a_group_id_now_used_by_others_keeps_a_job_for_neither(jobs: Jobs, job_root: Path) -> None:
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        job_id = jobs.run(command="true", wait_seconds=10).job_id
        edit_state(job_root, job_id, finished_at=OLD, pid=stranger.pid)  # as if its group id were recycled
        assert jobs.delete(job_id=job_id, dry_run=True).jobs[0].action == "would_delete"
        assert clean_up(job_root) == [job_id]
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
