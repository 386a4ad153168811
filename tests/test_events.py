"""Tags, completion events, output triggers and clean-up, with real processes: each event delivered once, in order."""

from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path

import psutil
import pytest
from helpers import Fifo, wait_exit

from jobcore import JobError, Jobs
from jobcore.retention import MAX_DELETIONS, auto_clean

ROOMY_BUDGET_S = 60.0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


@pytest.fixture
def jobs(root: Path) -> Jobs:
    return Jobs(root)


def settled(jobs: Jobs, job_id: str) -> Path:
    """The job's directory once its supervisor has finished every delivery."""
    job_dir = jobs.store.root / job_id
    wait_exit(json.loads((job_dir / "state.json").read_text())["supervisor_pid"], timeout=30)
    return job_dir


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# 1
def test_one_finished_event_per_job_to_file_and_command(jobs: Jobs, tmp_path: Path) -> None:
    sink = tmp_path / "events.ndjson"
    received = tmp_path / "received"
    received.mkdir()
    notify = (
        f'cat > {received}/"$AGENT_JOBS_JOB_ID.json"; '
        f'echo "$AGENT_JOBS_EVENT_TYPE $AGENT_JOBS_EVENT_PATH" >> {received}/env'
    )
    runs = {
        "exited": jobs.run(command="echo done; exit 4", notify_file=str(sink), notify_command=notify),
        "killed": jobs.run(command="sleep 30", notify_file=str(sink), notify_command=notify, wait_seconds=0),
        "timeout": jobs.run(command="sleep 30", timeout=0.1, notify_file=str(sink), notify_command=notify),
    }
    jobs.kill(job_id=runs["killed"].job_id)
    for run in runs.values():
        settled(jobs, run.job_id)

    events = {e["job_id"]: e for e in lines_of(sink)}
    assert len(lines_of(sink)) == 3 and set(events) == {r.job_id for r in runs.values()}
    exited = events[runs["exited"].job_id]
    assert (exited["event_type"], exited["state"], exited["exit_code"]) == ("job.finished", "exited", 4)
    assert events[runs["killed"].job_id]["reason"] == "killed"
    assert (events[runs["timeout"].job_id]["state"], events[runs["timeout"].job_id]["reason"]) == ("killed", "timeout")
    for job_id, event in events.items():
        assert json.loads((received / f"{job_id}.json").read_text()) == event
        recorded = json.loads((jobs.store.root / job_id / "completion_event.json").read_text())
        assert [(d["sink"], d["ok"]) for d in recorded.pop("delivery_results")] == [("file", True), ("command", True)]
        assert recorded == event
    assert sorted((received / "env").read_text().split()) == sorted(
        ["job.finished"] * 3 + [str(jobs.store.root / j / "completion_event.json") for j in events]
    )


# 2
def test_hanging_or_failing_sinks_never_change_or_delay_the_end(jobs: Jobs, tmp_path: Path) -> None:
    ready = Fifo(tmp_path / "sink-ready")
    sink_command = f"echo x > {ready}; sleep 600"
    hanging = jobs.run(command="echo out", notify_command=sink_command, wait_seconds=10)
    assert (hanging.state, hanging.exit_code) == ("exited", 0)  # recorded while the sink still runs
    job_dir = jobs.store.root / hanging.job_id
    assert json.loads((job_dir / "completion_event.json").read_text())["delivery_results"] == []
    # The sink is not the job: kill finds nothing of the job alive and leaves the sink be.
    assert jobs.kill(job_id=hanging.job_id).signal is None
    assert jobs.delete(job_id=hanging.job_id, dry_run=True).jobs[0].action == "would_delete"
    supervisor = psutil.Process(json.loads((job_dir / "state.json").read_text())["supervisor_pid"])
    ready.read()  # the sink runs
    (sink,) = supervisor.children()
    assert sink.cmdline()[-1] == sink_command
    os.killpg(sink.pid, signal.SIGTERM)  # the sink runs in a session of its own
    settled(jobs, hanging.job_id)
    result = json.loads((job_dir / "completion_event.json").read_text())["delivery_results"]
    assert [(r["sink"], r["ok"]) for r in result] == [("command", False)]
    assert result[0]["error"].startswith("killed by signal")
    assert jobs.snapshot(job_id=hanging.job_id).state == "exited"

    failing = jobs.run(command="true", notify_command="echo nope >&2; exit 9", notify_file="/no/such/dir/x")
    job_dir = settled(jobs, failing.job_id)
    result = json.loads((job_dir / "completion_event.json").read_text())["delivery_results"]
    assert [(r["sink"], r["ok"]) for r in result] == [("file", False), ("command", False)]
    assert "exit code 9" in result[1]["error"]
    assert "/no/such/dir/x" in result[0]["error"]
    snap = jobs.snapshot(job_id=failing.job_id)
    assert (snap.state, snap.exit_code) == ("exited", 0)


# 3
def test_every_matching_line_is_one_event_in_order(jobs: Jobs, tmp_path: Path) -> None:
    sink = tmp_path / "matches.ndjson"
    result = jobs.run(
        command="i=0; while [ $i -lt 10000 ]; do i=$((i+1)); "
        'if [ $((i % 10)) -eq 0 ]; then echo "MATCH $i"; else echo "other $i" >&2; fi; done',
        on_output_match={"pattern": r"^MATCH \d+$", "match_type": "regex", "notify_file": str(sink)},
        wait_seconds=60,
    )
    assert result.state == "exited"
    job_dir = settled(jobs, result.job_id)
    expected = [f"MATCH {i}" for i in range(10, 10001, 10)]
    assert [e["line"] for e in lines_of(sink)] == expected
    recorded = lines_of(job_dir / "notification_events.ndjson")
    assert [e["line"] for e in recorded] == expected
    assert {(e["event_type"], e["stream"], e["match_type"]) for e in recorded} == {
        ("job.output.matched", "stdout", "regex")
    }
    events = jobs.snapshot(job_id=result.job_id).events
    assert (events.matched, events.last_line) == (1000, "MATCH 10000")
    assert jobs.wait(job_id=result.job_id).events.matched == 1000


def test_trigger_commands_run_in_order_and_stream_filter_applies(jobs: Jobs, tmp_path: Path) -> None:
    got = tmp_path / "got"
    got.mkdir()
    result = jobs.run(
        command="for i in 1 2 3 4 5; do echo hit $i; echo hit err >&2; done",
        on_output_match={
            "pattern": "hit",
            "stream": "stdout",
            "notify_command": f'n=$(ls {got} | wc -l); cat > {got}/"$n.json"',
        },
    )
    settled(jobs, result.job_id)
    events = [json.loads((got / f"{n}.json").read_text()) for n in range(len(os.listdir(got)))]
    assert [e["line"] for e in events] == [f"hit {i}" for i in range(1, 6)]
    recorded = lines_of(jobs.store.root / result.job_id / "notification_events.ndjson")
    assert [e["line"] for e in recorded] == [f"hit {i}" for i in range(1, 6)]
    assert all(e["delivery_results"][0]["ok"] for e in recorded)


def test_bad_regex_is_refused_at_create(root: Path, jobs: Jobs) -> None:
    with pytest.raises(JobError) as refused:
        jobs.create(command="true", on_output_match={"pattern": "(unclosed", "match_type": "regex"})
    assert refused.value.code == "invalid_input" and "(unclosed" in refused.value.message
    assert not root.exists() or jobs.store.job_ids() == []


# 4
def test_tag_grammar_filters_and_tag_job(jobs: Jobs) -> None:
    for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "ü"]:
        with pytest.raises(JobError) as refused:
            jobs.create(command="true", tags=[bad])
        assert refused.value.code == "invalid_input" and repr(bad) in refused.value.message
    one = jobs.create(command="true", tags=["ci", "project.build", "ci"]).job_id
    two = jobs.create(command="true", tags=["project", "release.v2"]).job_id
    three = jobs.create(command="true", tags=["projects"]).job_id
    listed = lambda *tags: [j.job_id for j in jobs.list(all=True, tags=list(tags)).jobs]  # noqa: E731
    assert jobs.snapshot(job_id=one).tags == ["ci", "project.build"]
    assert listed("project.*") == [two, one]
    assert listed("project.*", "ci") == [one]
    assert listed("release.v2") == [two]
    assert listed("projects") == [three]
    assert jobs.tag(job_id=three, tags=["project.x"]).tags == ["project.x"]
    assert listed("project.*") == [three, two, one]
    with pytest.raises(JobError):
        jobs.list(all=True, tags=["bad..filter"])


# 5
def _age(jobs: Jobs, job_id: str, finished_at: str) -> None:
    path = jobs.store.root / job_id / "state.json"
    state = json.loads(path.read_text())
    state["finished_at"] = finished_at
    path.write_text(json.dumps(state))


def test_delete_by_age_dry_run_real_run_and_what_is_untouched(jobs: Jobs) -> None:
    old = [jobs.run(command="true").job_id for _ in range(2)]
    recent = jobs.run(command="true").job_id
    created = jobs.create(command="true").job_id
    running = jobs.run(command="sleep 30", wait_seconds=0).job_id
    for job_id in old:
        _age(jobs, job_id, "2026-01-01T00:00:00.000Z")

    dry = jobs.delete(finished_older_than="7d", dry_run=True)
    actions = {j.job_id: (j.action, j.reason) for j in dry.jobs}
    assert dry.deleted == 0 and dry.dry_run
    assert {actions[j] for j in old} == {("would_delete", "ended")}
    assert actions[recent] == ("skipped", "too_recent")
    assert actions[created] == ("skipped", "not_ended")
    assert actions[running] == ("skipped", "running")
    assert sorted(jobs.store.job_ids()) == sorted([*old, recent, created, running])

    real = jobs.delete(finished_older_than="7d")
    assert real.deleted == 2
    assert sorted(jobs.store.job_ids()) == sorted([recent, created, running])
    jobs.kill(job_id=running, signal="SIGKILL")


def test_delete_skips_an_ended_job_whose_process_lives(jobs: Jobs) -> None:
    job_id = jobs.run(command="sleep 30 & true").job_id
    assert jobs.delete(job_id=job_id).jobs[0].reason == "alive"
    jobs.kill(job_id=job_id)
    assert jobs.delete(job_id=job_id).deleted == 1


def test_delete_needs_exactly_one_selector(jobs: Jobs) -> None:
    for args in ({}, {"job_id": "abcd", "finished_older_than": "1d"}, {"finished_older_than": "soon"}):
        with pytest.raises(JobError) as refused:
            jobs.delete(**args)
        assert refused.value.code == "invalid_input"


def test_automatic_clean_up_is_bounded_and_locked(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_JOBS_RETENTION", "1d")
    old = [jobs.run(command="true").job_id for _ in range(MAX_DELETIONS + 5)]
    for job_id in old:
        _age(jobs, job_id, "2026-01-01T00:00:00.000Z")
    keep = jobs.run(command="true").job_id

    # The scan budget is raised so that each turn stops on MAX_DELETIONS, never on a loaded machine's clock.
    lock = os.open(jobs.store.root / ".retention.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another server is cleaning up
    try:
        assert auto_clean(jobs.store.root, force=True, budget_s=ROOMY_BUDGET_S) == []
    finally:
        os.close(lock)

    first = auto_clean(jobs.store.root, force=True, budget_s=ROOMY_BUDGET_S)
    assert len(first) == MAX_DELETIONS
    assert auto_clean(jobs.store.root) == []  # too soon after the last turn
    second = auto_clean(jobs.store.root, force=True, budget_s=ROOMY_BUDGET_S)
    assert sorted(first + second) == sorted(old)
    assert jobs.store.job_ids() == [keep]

    monkeypatch.setenv("AGENT_JOBS_RETENTION", "off")
    _age(jobs, keep, "2026-01-01T00:00:00.000Z")
    assert auto_clean(jobs.store.root, force=True, budget_s=ROOMY_BUDGET_S) == []


def test_launches_run_the_clean_up(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_JOBS_RETENTION", "1h")
    stale = jobs.run(command="true").job_id
    _age(jobs, stale, "2026-01-01T00:00:00.000Z")
    (jobs.store.root / ".retention.stamp").unlink(missing_ok=True)
    fresh = jobs.run(command="true").job_id
    assert jobs.store.job_ids() == [fresh]


def test_kill_and_its_escalation_spare_the_notify_command(jobs: Jobs, tmp_path: Path) -> None:
    done = tmp_path / "done"
    started = jobs.run(
        command="sleep 30", kill_after=0.1, notify_command=f"sleep 0.5; echo ok > {done}", wait_seconds=0
    )
    assert jobs.kill(job_id=started.job_id, wait_seconds=10).state == "killed"
    job_dir = settled(jobs, started.job_id)
    assert done.read_text() == "ok\n"
    results = json.loads((job_dir / "completion_event.json").read_text())["delivery_results"]
    assert [(r["sink"], r["ok"]) for r in results] == [("command", True)]


def test_a_notify_file_nobody_reads_does_not_hold_the_end_back(jobs: Jobs, tmp_path: Path) -> None:
    fifo = tmp_path / "nobody-reads"
    os.mkfifo(fifo)
    result = jobs.run(command="echo hi", notify_file=str(fifo), wait_seconds=10)
    assert result.state == "exited" and result.waited_ms < 10_000  # woken by the end, not the deadline
    job_dir = settled(jobs, result.job_id)
    (delivery,) = json.loads((job_dir / "completion_event.json").read_text())["delivery_results"]
    assert (delivery["sink"], delivery["ok"]) == ("file", False)


def test_last_matched_line_is_capped_in_snapshots(jobs: Jobs) -> None:
    result = jobs.run(command="printf 'hit%.0s' $(seq 1 5000); echo", on_output_match={"pattern": "hit"})
    settled(jobs, result.job_id)
    events = jobs.snapshot(job_id=result.job_id).events
    assert events.matched == 1 and events.last_line == "hit" * 1365 + "h"


def test_an_empty_retention_variable_means_the_default(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_JOBS_RETENTION", "")
    stale = jobs.run(command="true").job_id
    _age(jobs, stale, "2025-01-01T00:00:00.000Z")  # older than the default 30d
    assert auto_clean(jobs.store.root, force=True) == [stale]


def test_a_burst_beyond_the_queue_is_recorded_as_undelivered(jobs: Jobs, tmp_path: Path) -> None:
    from jobcore.supervisor.events import MAX_QUEUED

    hold, done = Fifo(tmp_path / "hold"), tmp_path / "done"
    burst = MAX_QUEUED + 50
    result = jobs.run(
        command=f"seq 1 {burst}",
        # The first delivery holds the queue until the test releases it; the rest pass through.
        on_output_match={
            "pattern": "^",
            "match_type": "regex",
            "notify_command": f"[ -e {done} ] || {{ read x < {hold}; touch {done}; }}",
        },
    )
    job_dir = jobs.store.root / result.job_id
    events_file = job_dir / "notification_events.ndjson"
    hold.write()
    settled(jobs, result.job_id)
    recorded = lines_of(events_file)
    assert sorted(e["seq"] for e in recorded) == list(range(1, burst + 1))
    not_delivered = [e for e in recorded if not e["delivery_results"][0]["ok"]]
    assert len(not_delivered) == burst - MAX_QUEUED
    assert all("not delivered" in e["delivery_results"][0]["error"] for e in not_delivered)
    assert jobs.snapshot(job_id=result.job_id).events.undelivered == burst - MAX_QUEUED


def test_matched_events_carry_their_place_in_the_log(jobs: Jobs, tmp_path: Path) -> None:
    """line_number and offset of each event point at its line in the log, past multi-byte text and reads."""
    sink = tmp_path / "matches.ndjson"
    result = jobs.run(
        command="i=0; while [ $i -lt 20000 ]; do i=$((i+1)); "
        'if [ $((i % 7)) -eq 0 ]; then echo "héllo MATCH $i"; else echo "été $i"; echo "e $i" >&2; fi; done',
        on_output_match={"pattern": "MATCH", "stream": "stdout", "notify_file": str(sink)},
        wait_seconds=60,
    )
    assert result.state == "exited"
    job_dir = settled(jobs, result.job_id)
    raw = (job_dir / "stdout.log").read_bytes()
    expected, offset = [], 0
    for number, line in enumerate(raw.split(b"\n")[:-1], 1):
        if b"MATCH" in line:
            expected.append((number, offset))
        offset += len(line) + 1
    recorded = lines_of(job_dir / "notification_events.ndjson")
    assert [(e["line_number"], e["offset"]) for e in recorded] == expected
    assert [(e["line_number"], e["offset"]) for e in lines_of(sink)] == expected
    assert result.events is not None and result.events.matched > 0  # run_job's payload carries them too
    events = jobs.snapshot(job_id=result.job_id).events
    assert (events.line_number, events.offset) == expected[-1]
