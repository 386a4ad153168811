"""idempotency_key: a repeated create or run gets the first call's job and starts nothing new."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobcore import JobError, Jobs

REPO = Path(__file__).resolve().parent.parent

_RUN_IN_CHILD = """
import json, os, sys
from jobcore import Jobs

os.read(int(sys.argv[3]), 1)  # the go signal: every child is ready, all run at once
job = Jobs(sys.argv[1]).run(command=sys.argv[2], idempotency_key="deploy 42", wait_seconds=0)
print(json.dumps({"job_id": job.job_id, "existing": bool(job.existing)}))
"""


@pytest.fixture
def jobs(job_root: Path) -> Jobs:
    return Jobs(job_root)


def test_concurrent_runs_with_one_key_start_one_job(jobs: Jobs, job_root: Path, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    command = f"echo once >> '{ran}'"
    go_read, go_write = os.pipe()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN_IN_CHILD, str(job_root), command, str(go_read)],
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=(go_read,),
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for _ in range(4)
    ]
    os.close(go_read)
    os.write(go_write, b"go" * 4)
    os.close(go_write)
    answers = [json.loads(child.communicate(timeout=60)[0]) for child in children]
    assert all(child.returncode == 0 for child in children)
    assert len({a["job_id"] for a in answers}) == 1, answers
    assert sorted(a["existing"] for a in answers) == [False, True, True, True]
    assert jobs.store.job_ids() == [answers[0]["job_id"]]
    ended = jobs.wait(job_id=answers[0]["job_id"], wait_seconds=30)
    assert ended.state == "exited"
    assert ran.read_text() == "once\n"


def test_create_again_returns_the_job_in_its_current_state(jobs: Jobs) -> None:
    first = jobs.create(command="echo hi", idempotency_key="k1")
    assert (first.state, first.existing) == ("created", None)
    again = jobs.create(command="echo hi", idempotency_key="k1")
    assert (again.job_id, again.state, again.existing) == (first.job_id, "created", True)
    jobs.start(job_id=first.job_id, wait_seconds=30)
    later = jobs.create(command="echo hi", idempotency_key="k1")
    assert (later.job_id, later.state, later.existing) == (first.job_id, "exited", True)
    rerun = jobs.run(command="echo hi", idempotency_key="k1", wait_seconds=30, tail_lines=5)
    assert (rerun.job_id, rerun.existing, rerun.final_snapshot.stdout_tail) == (first.job_id, True, "hi\n")
    assert jobs.store.job_ids() == [first.job_id]
    other = jobs.create(command="echo hi", idempotency_key="k2")
    assert other.job_id != first.job_id


def test_same_key_other_definition_is_refused_naming_the_job(jobs: Jobs) -> None:
    first = jobs.run(command="echo hi", idempotency_key="k", wait_seconds=30)
    with pytest.raises(JobError) as refused:
        jobs.run(command="echo bye", idempotency_key="k", wait_seconds=30)
    assert refused.value.code == "invalid_input"
    assert refused.value.details == {"field": "idempotency_key", "job_id": first.job_id}
    assert first.job_id in refused.value.message
    assert jobs.store.job_ids() == [first.job_id]


def test_a_deleted_job_frees_its_key(jobs: Jobs) -> None:
    first = jobs.run(command="true", idempotency_key="k", wait_seconds=30)
    jobs.delete(job_id=first.job_id)
    second = jobs.run(command="true", idempotency_key="k", wait_seconds=30)
    assert second.job_id != first.job_id and second.existing is None


@pytest.mark.parametrize("key", ["", "x" * 129, "caf\u00e9", "tab\there"])
def test_bad_keys_are_refused(jobs: Jobs, key: str) -> None:
    with pytest.raises(JobError) as refused:
        jobs.create(command="true", idempotency_key=key)
    assert refused.value.code == "invalid_input" and refused.value.details == {"field": "idempotency_key"}
    assert jobs.store.job_ids() == []


def test_a_refused_call_with_a_key_creates_nothing(jobs: Jobs, job_root: Path) -> None:
    """Found by the fuzzer: the key's marker was made before the definition was checked."""
    with pytest.raises(JobError) as refused:
        jobs.create(command="true", stdin_file="/no/such/file", idempotency_key="k")
    assert refused.value.details["field"] == "stdin_file"
    assert not (job_root / ".keys").exists()
    assert jobs.create(command="true", idempotency_key="k").existing is None
