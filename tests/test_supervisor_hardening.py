"""The supervisor under hostile conditions: patterns that never finish, a supervisor that does
not respond, writes the disk refuses, an OS crash, other users. Real processes throughout."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import Fifo, wait_exit

from jobcore import Jobs
from jobcore.supervisor import warmup
from jobcore.supervisor.matcher import BEHIND_REASON, LINE_LIMIT_REASON

REPO = Path(__file__).resolve().parent.parent
#: A line on which ``(a+)+$`` backtracks for ever (2**40 ways to fail).
RUNAWAY = {"pattern": "(a+)+$", "match_type": "regex"}
RUNAWAY_COMMAND = f"printf '{'a' * 40}!\\n'; sleep 30"


@pytest.fixture
def jobs(job_root: Path) -> Jobs:
    return Jobs(job_root)


def job_dir(jobs: Jobs, job_id: str) -> Path:
    return jobs.store.root / job_id


def state_of(jobs: Jobs, job_id: str) -> dict:
    return json.loads((job_dir(jobs, job_id) / "state.json").read_text())


def settled(jobs: Jobs, job_id: str) -> None:
    """Until the job's supervisor has exited (its last records written)."""
    wait_exit(state_of(jobs, job_id)["supervisor_pid"], timeout=30)


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- output triggers whose pattern runs away -------------------------------------------------


def test_a_runaway_regex_is_disabled_and_timeout_kill_restart_delete_work(jobs: Jobs) -> None:
    ran = jobs.run(command=RUNAWAY_COMMAND, timeout=1, on_output_match=RUNAWAY, wait_seconds=30)
    assert (ran.state, ran.reason) == ("killed", "timeout")
    assert ran.waited_ms < 10_000  # the timeout fired, within a few seconds of being due
    snap = jobs.snapshot(job_id=ran.job_id)
    assert snap.events is not None
    assert (snap.events.matched, snap.events.disabled) == (0, LINE_LIMIT_REASON)
    assert jobs.wait(job_id=ran.job_id).events.disabled == LINE_LIMIT_REASON
    settled(jobs, ran.job_id)
    counters = json.loads((job_dir(jobs, ran.job_id) / "triggers.json").read_text())
    assert counters["disabled"] == LINE_LIMIT_REASON
    (event,) = lines_of(job_dir(jobs, ran.job_id) / "notification_events.ndjson")
    assert (event["event_type"], event["reason"], event["pattern"]) == (
        "job.trigger.disabled",
        LINE_LIMIT_REASON,
        "(a+)+$",
    )

    restarted = jobs.restart(job_id=ran.job_id, wait_seconds=0)
    assert restarted.state == "running"
    killed = jobs.kill(job_id=ran.job_id, wait_seconds=10)
    assert killed.state == "killed" and killed.observed_within_ms < 10_000
    assert state_of(jobs, ran.job_id)["reason"] == "killed"
    settled(jobs, ran.job_id)
    assert jobs.delete(job_id=ran.job_id).deleted == 1


def test_kill_works_while_the_pattern_runs_away(jobs: Jobs) -> None:
    started = jobs.run(command=RUNAWAY_COMMAND, on_output_match=RUNAWAY, wait_seconds=0)
    killed = jobs.kill(job_id=started.job_id, wait_seconds=10)
    assert (killed.state, killed.signal) == ("killed", "SIGTERM")
    assert killed.observed_within_ms < 10_000
    assert state_of(jobs, started.job_id)["reason"] == "killed"


def test_matching_that_cannot_keep_up_is_disabled(jobs: Jobs) -> None:
    """Each line costs the pattern milliseconds (never near the line limit); lines come faster.
    The job prints until it sees the trigger disabled, so its own end says when."""
    script = (
        "import os, sys, time\n"
        "events = os.path.join(sys.argv[1], os.environ['AGENT_JOBS_JOB_ID'], 'notification_events.ndjson')\n"
        "while not os.path.exists(events):\n"
        "    print('a' * 1000, flush=True)\n"
        "    time.sleep(0.002)\n"
    )
    ran = jobs.run(
        command=[sys.executable, "-c", script, str(jobs.store.root)],
        on_output_match={"pattern": "(a|b)*c", "match_type": "regex"},
        wait_seconds=120,
    )
    assert (ran.state, ran.exit_code) == ("exited", 0)
    settled(jobs, ran.job_id)
    assert jobs.snapshot(job_id=ran.job_id).events.disabled == BEHIND_REASON
    (event,) = lines_of(job_dir(jobs, ran.job_id) / "notification_events.ndjson")
    assert (event["event_type"], event["reason"]) == ("job.trigger.disabled", BEHIND_REASON)
    full_log = (job_dir(jobs, ran.job_id) / "full.log").read_bytes()
    assert full_log.count(b"\n") == (job_dir(jobs, ran.job_id) / "stdout.log").read_bytes().count(b"\n")


def test_a_fast_pattern_matches_every_line_of_a_burst(jobs: Jobs) -> None:
    ran = jobs.run(command="seq 1 200000", on_output_match={"pattern": "7$", "match_type": "regex"}, wait_seconds=60)
    settled(jobs, ran.job_id)
    events = jobs.snapshot(job_id=ran.job_id).events
    assert (events.matched, events.last_line, events.disabled) == (20000, "199997", None)


# --- a supervisor that does not respond ---------------------------------------------------------


def run_and_stop_supervisor(jobs: Jobs, ready: Fifo, command: str, **run_args: Any) -> tuple[str, int]:
    """Run ``command`` (it writes a line to ``ready`` once under way), then SIGSTOP its supervisor.

    The job's id and the stopped supervisor's pid."""
    job_id = jobs.run(command=command, wait_seconds=0, **run_args).job_id
    ready.read()
    supervisor = state_of(jobs, job_id)["supervisor_pid"]
    os.kill(supervisor, signal.SIGSTOP)
    return job_id, supervisor


def test_kill_ends_a_stopped_supervisor_and_records_the_end(jobs: Jobs, tmp_path: Path) -> None:
    ready = Fifo(tmp_path / "ready")
    job_id, supervisor = run_and_stop_supervisor(jobs, ready, f"echo x > {ready}; sleep 30")
    killed = jobs.kill(job_id=job_id, wait_seconds=10)
    assert (killed.state, killed.signal) == ("killed", "SIGTERM")
    assert killed.observed_within_ms < 10_000
    wait_exit(supervisor)
    state = state_of(jobs, job_id)
    assert (state["reason"], state["supervisor"], state["result"]["signal"]) == ("killed", "unresponsive", "SIGTERM")
    assert jobs.delete(job_id=job_id).deleted == 1


def test_kill_escalates_itself_when_a_stopped_supervisor_cannot(jobs: Jobs, tmp_path: Path) -> None:
    ready = Fifo(tmp_path / "ready")
    command = f"trap '' TERM; echo x > {ready}; sleep 30"
    job_id, supervisor = run_and_stop_supervisor(jobs, ready, command, kill_after=0.2)
    killed = jobs.kill(job_id=job_id, wait_seconds=10)
    assert killed.state == "killed" and killed.observed_within_ms < 10_000
    wait_exit(supervisor)
    state = state_of(jobs, job_id)
    assert (state["reason"], state["supervisor"], state["result"]["signal"]) == ("killed", "unresponsive", "SIGKILL")
    assert jobs.snapshot(job_id=job_id).state == "killed"


def test_restart_ends_a_stopped_supervisor(jobs: Jobs, tmp_path: Path) -> None:
    ready = Fifo(tmp_path / "ready")
    job_id, supervisor = run_and_stop_supervisor(jobs, ready, f"echo x > {ready}; sleep 30")
    restarted = jobs.restart(job_id=job_id, wait_seconds=0)
    assert restarted.state == "running"
    wait_exit(supervisor)
    assert state_of(jobs, job_id)["supervisor_pid"] != supervisor
    ready.read()  # the new run is under way
    assert jobs.kill(job_id=job_id, wait_seconds=10).state == "killed"


# --- writes the disk refuses ---------------------------------------------------------------------


def test_full_log_over_a_file_size_limit_never_ends_supervision(job_root: Path, jobs: Jobs) -> None:
    """RLIMIT_FSIZE stands in for a full disk: the command's own output (41 KB) fits under it,
    full.log (the same lines, timestamped: 75 KB) does not. The supervisor inherits the limit."""
    limit = 64 * 1024
    command = f"i=0; while [ $i -lt 1000 ]; do echo {'x' * 40}; i=$((i+1)); done; exit 7"
    launcher = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from jobcore import Jobs\n"
        f"print(Jobs(sys.argv[1]).run(command={command!r}, wait_seconds=30).job_id)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", launcher, str(job_root)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = out.stdout.strip()
    settled(jobs, job_id)
    snap = jobs.snapshot(job_id=job_id)
    assert (snap.state, snap.exit_code) == ("exited", 7)
    assert snap.write_errors is not None and snap.write_errors.full_log_bytes > 0
    assert snap.write_errors.last_error.endswith("full.log") and "too large" in snap.write_errors.last_error
    full_log = job_dir(jobs, job_id) / "full.log"
    assert full_log.stat().st_size + snap.write_errors.full_log_bytes == 1000 * len(
        "2026-01-01T00:00:00.000Z [STDOUT] " + "x" * 40 + "\n"
    )
    assert jobs.wait(job_id=job_id).write_errors == snap.write_errors
    assert state_of(jobs, job_id)["write_errors"]["events"] == 0
    assert len((job_dir(jobs, job_id) / "stdout.log").read_bytes()) == 41 * 1000  # nothing of the job is lost


# --- durable records ---------------------------------------------------------------------------------

_SYSCALL = re.compile(r"^(openat|fsync|rename)\((.*)\) += (-?\d+)")


def _renames(trace: str) -> list[tuple[str, bool]]:
    """Each file one thread renamed into place, and whether durably: the temp file fsynced
    before the rename, its directory opened and fsynced after it."""
    fds: dict[str, str] = {}
    synced: set[str] = set()
    out: list[tuple[str, bool]] = []
    awaiting_dir: str | None = None
    for line in trace.splitlines():
        m = _SYSCALL.match(line)
        if not m:
            continue
        call, args, result = m[1], m[2], int(m[3])
        if call == "openat" and result >= 0:
            fds[str(result)] = args.split('"')[1]
        elif call == "fsync":
            path = fds.get(args, "")
            synced.add(path)
            if awaiting_dir is not None and path == os.path.dirname(awaiting_dir):
                out[-1] = (os.path.basename(awaiting_dir), True)
                awaiting_dir = None
        elif call == "rename" and result == 0:
            src, dst = args.split('"')[1], args.split('"')[3]
            if warmup.WARM_UP_PREFIX in dst:
                continue  # the fork server's own throwaway jobs, not the one launched
            out.append((os.path.basename(dst), False))
            awaiting_dir = dst if src in synced else None
    return out


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to see the fsyncs")
def test_definition_and_end_record_are_made_durable(job_root: Path, tmp_path: Path) -> None:
    """``create_job`` makes the definition durable before it returns; the supervisor, the end record."""
    traces = tmp_path / "traces"
    traces.mkdir()
    launcher = (
        "import os, select, sys\n"
        "from jobcore import Jobs\n"
        "jobs = Jobs(sys.argv[1])\n"
        "r = jobs.start(job_id=jobs.create(command='exit 3').job_id)\n"
        "try:\n"
        "    fd = os.pidfd_open(jobs.store.open(r.job_id).read_state()['supervisor_pid'])\n"
        "    select.select([fd], [], [], 30)\n"
        "except ProcessLookupError:\n"
        "    pass  # it is done\n"
    )
    # One file per thread (-ff), so no call is split across lines by another's.
    strace = ["strace", "-ff", "-qq", "-e", "trace=openat,fsync,rename", "-e", "signal=none", "-o", str(traces / "t")]
    subprocess.run(
        [*strace, sys.executable, "-c", launcher, str(job_root)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        timeout=60,
    )
    renames = [_renames(path.read_text()) for path in traces.iterdir()]
    assert [durable for thread in renames for name, durable in thread if name == "meta.json"] == [True]
    # The supervisor is the thread that wrote the completion event.
    (supervisor,) = [thread for thread in renames if ("completion_event.json", False) in thread]
    assert [durable for name, durable in supervisor if name == "state.json"] == [False, True]  # running, the end


#: ``1234 fsync(3</path>) = 0``, ``1234 fsync(3</path> <unfinished ...>``, ``1234 <... fsync resumed>) = 0``.
_STRACE_LINE = re.compile(r"^(?P<pid>\d+) +(?:<\.\.\. (?P<resumed>\w+) resumed>|(?P<call>\w+)\((?P<args>.*))")


@dataclass
class _Call:
    pid: int
    name: str
    args: str
    #: Index of the line where the call began and where it returned, in the trace's order.
    began: int
    ended: int


def _trace(tmp_path: Path, script: str) -> tuple[Path, int, list[_Call]]:
    """Run ``script`` (given ``jobs``, a store under tmp_path; it prints a job id) under
    ``strace -f``: the job's directory, the script's pid and the calls."""
    out = tmp_path / "trace.txt"
    code = f"import sys; from jobcore import Jobs; jobs = Jobs(sys.argv[1]); {script}"
    env = {**os.environ, "AGENT_JOBS_FORKSERVER": "0"}  # a fork server would outlive the trace
    strace = ["strace", "-f", "-y", "-s", "200", "-o", str(out), "-e", "trace=fsync,execve,write"]
    done = subprocess.run(
        [*strace, sys.executable, "-c", code, str(tmp_path / "jobs")],
        check=True,
        cwd=REPO,
        env=env,
        timeout=60,
        capture_output=True,
        text=True,
    )
    calls: list[_Call] = []
    pending: dict[int, _Call] = {}
    top = 0
    for index, line in enumerate(out.read_text().splitlines()):
        match = _STRACE_LINE.match(line)
        if match is None:
            continue
        pid = int(match["pid"])
        top = top or pid
        if match["resumed"]:
            if (call := pending.pop(pid, None)) is not None:
                call.ended = index
            continue
        call = _Call(pid, match["call"], match["args"], index, index)
        calls.append(call)
        if line.endswith("<unfinished ...>"):
            pending[pid] = call
    return tmp_path / "jobs" / done.stdout.strip(), top, calls


def _fsyncs_of(calls: list[_Call], path: Path) -> list[_Call]:
    return [c for c in calls if c.name == "fsync" and re.match(rf"\d+<{re.escape(str(path))}>", c.args)]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to see the fsyncs")
def test_run_starts_the_command_before_the_definition_is_fsynced_and_returns_after(tmp_path: Path) -> None:
    """``run_job`` starts the command before ``meta.json`` is fsynced (its supervisor makes it
    durable right after the spawn) and returns only once it is."""
    job_dir, top, calls = _trace(tmp_path, "print(jobs.run(command='true durability-probe', wait_seconds=10).job_id)")
    command = next(c for c in calls if c.name == "execve" and '"-c", "true durability-probe"' in c.args)
    supervisor = next(c.pid for c in calls if c.name == "write" and '"ACK"' in c.args)
    ack = next(c for c in calls if c.name == "write" and c.pid == supervisor and '"ACK"' in c.args)
    meta, directory, root = (
        _fsyncs_of(calls, job_dir / "meta.json"),
        _fsyncs_of(calls, job_dir),
        _fsyncs_of(calls, tmp_path / "jobs"),
    )
    assert [c.pid for c in meta] == [supervisor], "only the supervisor fsyncs meta.json"
    assert command.began < meta[0].began, "the command starts without waiting for the disk"
    # The definition, its directory and the directory's entry in the root, all before the launch is acknowledged.
    for fsync in (meta[0], next(c for c in directory if c.pid == supervisor), root[0]):
        assert fsync.pid == supervisor and fsync.ended < ack.began
    assert not [c for c in calls if c.name == "fsync" and c.pid == top and c.began < ack.began]


# --- a store private to its owner ---------------------------------------------------------------------


def test_files_the_supervisor_creates_are_private(jobs: Jobs, tmp_path: Path) -> None:
    modes = tmp_path / "modes"
    sink = tmp_path / "sinks" / "finished.ndjson"
    matches = tmp_path / "sinks" / "matched.ndjson"
    sink.parent.mkdir()
    created = jobs.create(
        command="umask; echo hit",
        notify_file=str(sink),
        on_output_match={
            "pattern": "hit",
            "notify_file": str(matches),
            "notify_command": f'stat -c %a "$AGENT_JOBS_EVENT_PATH" >> {modes}',
        },
    )
    directory = job_dir(jobs, created.job_id)
    for name in ("stdout.log", "stderr.log", "full.log"):  # so that the supervisor creates them
        (directory / name).unlink()
    ran = jobs.start(job_id=created.job_id, wait_seconds=30)
    settled(jobs, created.job_id)
    umask = os.umask(0o77)
    os.umask(umask)
    assert ran.final_snapshot.stdout_tail == f"{umask:04o}\nhit\n"  # the command's umask is ours
    assert modes.read_text() == "600\n"  # the event file a trigger command reads
    for path in [sink, matches, *directory.iterdir()]:
        if path.name in ("meta.json", "wake.fifo", "job.lock"):  # the engine's, not the supervisor's
            continue
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
