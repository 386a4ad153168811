"""The engine with real processes, files and signals: run, wait, kill, restart, lost supervisors, bad input, logs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import Fifo, job_pids, wait_exit

from jobcore import AsyncJobs, JobError, Jobs

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the server's event loop


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


@pytest.fixture
def jobs(root: Path):
    j = Jobs(root)
    yield j
    # Leave nothing behind: SIGKILL whatever any job of this test still runs.
    for job_id in j.store.job_ids():
        state = json.loads((root / job_id / "state.json").read_text())
        for pid in job_pids(job_id, state.get("pid")):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def state_of(root: Path, job_id: str) -> dict:
    return json.loads((root / job_id / "state.json").read_text())


# 1
def test_run_echo_returns_output_and_exit_code_in_one_call(jobs: Jobs) -> None:
    result = jobs.run(command="echo hi")
    assert result.state == "exited"
    assert result.exit_code == 0
    assert result.final_snapshot is not None
    assert result.final_snapshot.stdout_tail == "hi\n"
    assert result.snapshot is None
    payload = result.to_dict()
    assert payload["type"] == "run" and payload["ok"] is True
    assert "signal" not in payload  # optional fields are left out, never null


def test_argv_command_runs_without_a_shell_and_exec_failure_is_recorded(jobs: Jobs) -> None:
    ok = jobs.run(command=["printf", "%s|", "a b", "$HOME"])
    assert ok.final_snapshot.stdout_tail == "a b|$HOME|"
    missing = jobs.run(command=["no-such-program-xyz"])
    assert missing.state == "failed"
    assert missing.reason.startswith("exec_failed: ")
    assert "no-such-program-xyz" in missing.reason
    via_shell = jobs.run(command="no-such-program-xyz")
    assert (via_shell.state, via_shell.exit_code) == ("exited", 127)


def test_env_cwd_stdin_and_masking(jobs: Jobs, tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text("# comment\nexport FROM_FILE='file value'\nBOTH=file\n")
    result = jobs.run(
        command='echo "$FROM_FILE|$BOTH|$SECRET|$AGENT_JOBS_JOB_ID|$(pwd)"; cat',
        cwd=str(tmp_path),
        env={"BOTH": "env", "SECRET": "s3cret"},
        env_files=[str(env_file)],
        mask=["SECRET"],
        stdin="from stdin\n",
    )
    out = result.final_snapshot.stdout_tail
    assert out == f"file value|env|s3cret|{result.job_id}|{tmp_path.resolve()}\nfrom stdin\n"
    assert result.env_vars == ["BOTH=env", "SECRET=***"]
    job_dir = Path(result.stdout_log_path).parent
    assert "s3cret" not in (job_dir / "meta.json").read_text()
    assert (job_dir / "stdin.bin").stat().st_mode & 0o777 == 0o600
    assert (job_dir / "env.json").stat().st_mode & 0o777 == 0o600


def test_inherit_env_false_starts_from_an_empty_environment(jobs: Jobs) -> None:
    result = jobs.run(command=["/usr/bin/env"], inherit_env=False, env={"ONLY": "1"})
    assert sorted(result.final_snapshot.stdout_tail.split()) == sorted(["ONLY=1", f"AGENT_JOBS_JOB_ID={result.job_id}"])


# 2
def test_job_survives_its_launcher_being_sigkilled(root: Path, jobs: Jobs, tmp_path: Path) -> None:
    go = Fifo(tmp_path / "go")
    launcher_code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from jobcore import Jobs
        result = Jobs({str(root)!r}).run(command="read x < {go}; exit 7", wait_seconds=0)
        print(result.job_id, result.state, flush=True)
        time.sleep(600)
    """)
    launcher = subprocess.Popen(
        [sys.executable, "-c", launcher_code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    job_id, state = launcher.stdout.readline().split()
    assert state == "running"
    supervisor = state_of(root, job_id)["supervisor_pid"]
    assert os.getsid(supervisor) != launcher.pid
    assert os.getpgid(supervisor) != launcher.pid
    launcher.kill()
    launcher.wait()
    go.write()
    result = jobs.wait(job_id=job_id, wait_seconds=10)
    assert (result.state, result.exit_code) == ("exited", 7)


# 3
def test_background_descendant_does_not_hold_the_job_open(jobs: Jobs) -> None:
    result = jobs.run(command="sleep 30 & echo started", wait_seconds=10)
    assert result.state == "exited" and result.exit_code == 0
    assert not result.to_dict().get("timed_out")
    assert result.final_snapshot.stdout_tail == "started\n"
    left = job_pids(result.job_id, None)
    assert left, "the background sleep should still be alive"
    killed = jobs.kill(job_id=result.job_id, wait_seconds=5)
    assert killed.signal == "SIGTERM"
    assert killed.state == "exited"  # the job's own end stays as recorded
    assert job_pids(result.job_id, None) == []


def test_restart_leaves_no_process_of_the_previous_run(jobs: Jobs, tmp_path: Path) -> None:
    first = jobs.run(command="setsid sleep 30 & echo run", wait_seconds=10)
    assert first.state == "exited"
    old = job_pids(first.job_id, None)
    assert old
    again = jobs.restart(job_id=first.job_id, wait_seconds=10)
    assert again.type == "restart" and again.job_id == first.job_id
    assert again.final_snapshot.stdout_tail == "run\n"  # logs were cleared, then written once
    for pid in old:
        wait_exit(pid, timeout=0.1)


# 4
def test_command_trapping_sigterm_is_sigkilled_after_kill_after(jobs: Jobs, tmp_path: Path) -> None:
    ready = Fifo(tmp_path / "ready")
    command = (
        f'python3 -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); '
        f"open('{ready}', 'w').write('x\\n'); time.sleep(60)\""
    )
    started = jobs.run(command=["sh", "-c", f"exec {command}"], kill_after=0.5, wait_seconds=0)
    ready.read()
    result = jobs.kill(job_id=started.job_id, wait_seconds=10)
    assert (result.state, result.signal) == ("killed", "SIGTERM")
    final = jobs.wait(job_id=started.job_id, wait_seconds=0)
    assert (final.signal, final.reason) == ("SIGKILL", "killed")


# 5
def test_timeout_ends_the_job_killed_with_reason_timeout(jobs: Jobs) -> None:
    result = jobs.run(command="sleep 30", timeout=0.2, wait_seconds=10)
    assert (result.state, result.signal, result.reason) == ("killed", "SIGTERM", "timeout")


# 6
def test_supervisor_killed_mid_job(root: Path, jobs: Jobs, tmp_path: Path) -> None:
    ready, go = Fifo(tmp_path / "ready"), Fifo(tmp_path / "go")
    started = jobs.run(
        command=f"echo before; echo x > {ready}; read a < {go}; echo after; echo x > {ready}; sleep 60",
        wait_seconds=0,
    )
    ready.read()
    supervisor = state_of(root, started.job_id)["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_exit(supervisor)

    lost = jobs.snapshot(job_id=started.job_id)
    assert (lost.state, lost.reason) == ("running", "supervisor_lost")
    go.write()
    ready.read()
    assert jobs.snapshot(job_id=started.job_id).snapshot.stdout_tail == "before\nafter\n"
    assert jobs.list(all=True).jobs[0].reason == "supervisor_lost"

    killed = jobs.kill(job_id=started.job_id, wait_seconds=10)
    assert killed.state == "failed"
    ended = jobs.wait(job_id=started.job_id, wait_seconds=0)
    assert (ended.state, ended.reason) == ("failed", "supervisor_lost")
    assert "exit_code" not in ended.to_dict()
    assert job_pids(started.job_id, None) == []


def test_wait_is_woken_when_a_lost_supervisors_command_ends(root: Path, jobs: Jobs, tmp_path: Path) -> None:
    ready, go = Fifo(tmp_path / "ready"), Fifo(tmp_path / "go")
    started = jobs.run(command=f"echo x > {ready}; read a < {go}; echo done", wait_seconds=0)
    ready.read()
    supervisor = state_of(root, started.job_id)["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_exit(supervisor)
    go.write()
    ended = jobs.wait(job_id=started.job_id, wait_seconds=10)
    assert (ended.state, ended.reason, ended.timed_out) == ("failed", "supervisor_lost", False)
    assert ended.final_snapshot.stdout_tail == "done\n"


# 7
def test_huge_line_and_binary_output_stay_within_max_bytes(jobs: Jobs) -> None:
    # 60000: within the budget per call with the payload's other fields (tests/test_budget.py).
    line = jobs.run(command="head -c 10000000 /dev/zero | tr '\\0' a", wait_seconds=30, max_bytes=60000)
    snap = line.final_snapshot
    assert snap.stdout_observed_bytes == 10_000_000
    assert snap.stdout_range == (10_000_000 - 60000, 10_000_000)
    assert snap.stdout_included_bytes == 60000 and snap.stdout_tail == "a" * 60000
    assert snap.truncated

    binary = jobs.run(command="head -c 200000 /dev/urandom", wait_seconds=30)
    raw = Path(binary.stdout_log_path).read_bytes()
    for max_bytes, tail_lines in ((1000, 0), (65536, 5), (300000, 50)):
        snap = jobs.snapshot(job_id=binary.job_id, max_bytes=max_bytes, tail_lines=tail_lines).snapshot
        begin, end = snap.stdout_range
        assert end - begin == snap.stdout_included_bytes <= max_bytes
        assert end == len(raw)
        assert snap.stdout_tail == raw[begin:end].decode("utf-8", errors="replace")
    assert "\ufffd" in snap.stdout_tail

    # Paging from each window's end reads the log exactly once.
    pages, offset = [], 0
    while True:
        snap = jobs.snapshot(job_id=binary.job_id, stdout_offset=offset, max_bytes=65536).snapshot
        begin, end = snap.stdout_range
        assert begin == offset
        if begin == end:
            break
        pages.append(raw[begin:end])
        offset = end
    assert b"".join(pages) == raw
    past = jobs.snapshot(job_id=binary.job_id, stdout_offset=10**9).snapshot
    assert past.stdout_range == (len(raw), len(raw))


def test_tail_lines_counts_a_last_line_without_newline(jobs: Jobs) -> None:
    result = jobs.run(command="printf 'a\\nb\\r\\nc\\nd'", tail_lines=2)
    snap = result.final_snapshot
    assert snap.stdout_tail == "c\nd"
    assert snap.stdout_range == (5, 8)
    assert snap.truncated


# 8
@pytest.mark.parametrize(
    ("call", "args", "code", "named"),
    [
        ("run", {"command": ""}, "invalid_input", "command"),
        ("run", {"command": ["echo", ""]}, "invalid_input", "command.1"),
        ("run", {"command": "true", "cwd": "/no/such/dir"}, "invalid_input", "/no/such/dir"),
        ("run", {"command": "true", "env": {"BAD-KEY": "v"}}, "invalid_input", "BAD-KEY"),
        ("run", {"command": "true", "stdin": "a", "stdin_file": "/etc/hostname"}, "invalid_input", "stdin_file"),
        ("run", {"command": "true", "stdin_file": "/no/such/file"}, "invalid_input", "/no/such/file"),
        ("run", {"command": "true", "timeout": -1}, "invalid_input", "timeout"),
        ("run", {"command": "true", "bogus": 1}, "invalid_input", "bogus"),
        ("run", {"command": "true", "tags": ["a..b"]}, "invalid_input", "a..b"),
        ("run", {"command": "echo a\0b"}, "invalid_input", "NUL"),
        ("run", {"command": "true", "env": {"K": "v\0"}}, "invalid_input", "NUL"),
        ("run", {"command": "true", "on_output_match": {"pattern": "x", "notify_file": "a\0"}}, "invalid_input", "NUL"),
        ("list", {"cwd": "/tmp\0"}, "invalid_input", "NUL"),
        ("run", {"command": "true", "stdin_file": "/etc/hostname\0"}, "invalid_input", "NUL"),
        ("snapshot", {"job_id": "../x"}, "invalid_input", "'../x'"),
        ("snapshot", {"job_id": "ABC"}, "invalid_input", "'ABC'"),
        ("snapshot", {"job_id": ""}, "invalid_input", "''"),
        ("snapshot", {"job_id": "abc"}, "invalid_input", "'abc'"),
        ("kill", {"job_id": "abcd", "signal": "SIGSTOP"}, "invalid_input", "SIGSTOP"),
        ("snapshot", {"job_id": "abcd"}, "job_not_found", "abcd"),
    ],
)
def test_bad_input_is_refused_and_creates_nothing(
    root: Path, jobs: Jobs, call: str, args: dict, code: str, named: str
) -> None:
    with pytest.raises(JobError) as refused:
        getattr(jobs, call)(**args)
    assert refused.value.code == code
    assert named in refused.value.message
    assert not root.exists() or list(root.iterdir()) == []


def test_stdin_over_64_mib_is_refused(root: Path, jobs: Jobs, tmp_path: Path) -> None:
    big = "x" * (65 * 1024 * 1024)
    with pytest.raises(JobError) as literal:
        jobs.run(command="cat", stdin=big)
    assert literal.value.code == "stdin_too_large"
    big_file = tmp_path / "big"
    big_file.write_text(big)
    with pytest.raises(JobError) as from_file:
        jobs.create(command="cat", stdin_file=str(big_file))
    assert from_file.value.code == "stdin_too_large"
    assert str(big_file) in from_file.value.message
    assert not root.exists() or list(root.iterdir()) == []


def test_prefix_lookup_and_ambiguity(root: Path, jobs: Jobs) -> None:
    job_id = jobs.create(command="true").job_id
    # A second job whose id shares the first four characters, and only those.
    twin = job_id[:4] + ("0" if job_id[4] != "0" else "1") + job_id[5:]
    shutil.copytree(root / job_id, root / twin, ignore=shutil.ignore_patterns("wake.fifo"))
    assert jobs.snapshot(job_id=job_id[:5]).job_id == job_id
    assert jobs.snapshot(job_id=twin).job_id == twin
    with pytest.raises(JobError) as ambiguous:
        jobs.snapshot(job_id=job_id[:4])
    assert ambiguous.value.code == "ambiguous_job_id"
    assert ambiguous.value.details["candidates"] == sorted([job_id, twin])


# 9
def test_two_processes_starting_one_created_job_only_one_runs_it(root: Path, jobs: Jobs, tmp_path: Path) -> None:
    job_id = jobs.create(command="echo once").job_id
    starter = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from jobcore import Jobs, JobError
        sys.stdin.readline()  # both start together
        try:
            print(Jobs({str(root)!r}).start(job_id={job_id!r}, wait_seconds=10).state)
        except JobError as e:
            print(e.code)
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", starter], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outcomes = sorted(p.communicate(timeout=30)[0].strip() for p in procs)
    assert outcomes == ["exited", "invalid_state"]
    assert jobs.snapshot(job_id=job_id).snapshot.stdout_tail == "once\n"


# 10
def test_256_mib_of_output_loses_no_byte(jobs: Jobs) -> None:
    size = 256 * 1024 * 1024
    result = jobs.run(command=f"head -c {size} /dev/zero", wait_seconds=60)
    assert (result.state, result.exit_code) == ("exited", 0)
    assert os.path.getsize(result.stdout_log_path) == size
    assert result.final_snapshot.stdout_observed_bytes == size


def test_full_log_interleaves_both_streams_with_timestamps(jobs: Jobs) -> None:
    result = jobs.run(command="echo out; echo err >&2; printf partial", wait_seconds=10)
    job_dir = Path(result.stdout_log_path).parent
    supervisor = state_of(job_dir.parent, result.job_id)["supervisor_pid"]
    wait_exit(supervisor)  # full.log is complete once the supervisor has finished
    lines = (job_dir / "full.log").read_text().splitlines()
    assert sorted(line.split(" ", 1)[1] for line in lines) == ["[STDERR] err", "[STDOUT] out", "[STDOUT] partial"]
    for line in lines:
        assert line[23] == "Z" and line[10] == "T"


def test_list_filters_and_orders_newest_first(jobs: Jobs, tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    a = jobs.run(command="true", tags=["ci", "project.build"], cwd=str(tmp_path)).job_id
    b = jobs.run(command="exit 3", tags=["project"], cwd=str(sub)).job_id
    c = jobs.create(command="true", cwd="/").job_id
    assert [j.job_id for j in jobs.list(all=True).jobs] == [c, b, a]
    assert [j.job_id for j in jobs.list(cwd=str(tmp_path)).jobs] == [b, a]
    assert [j.job_id for j in jobs.list(all=True, tags=["project.*"]).jobs] == [b, a]
    assert [j.job_id for j in jobs.list(all=True, tags=["project.*", "ci"]).jobs] == [a]
    assert [j.job_id for j in jobs.list(all=True, state="created").jobs] == [c]
    limited = jobs.list(all=True, limit=1)
    assert limited.truncated and len(limited.jobs) == 1
    assert jobs.tag(job_id=c, tags=["x", "x", "y.z"]).tags == ["x", "y.z"]


def test_delete_by_id_and_by_age(root: Path, jobs: Jobs) -> None:
    done = jobs.run(command="true").job_id
    created = jobs.create(command="true").job_id
    running = jobs.run(command="sleep 30", wait_seconds=0).job_id
    dry = jobs.delete(job_id=done, dry_run=True)
    assert (dry.deleted, dry.jobs[0].action) == (0, "would_delete")
    assert jobs.delete(job_id=running).jobs[0].reason == "running"
    by_age = jobs.delete(finished_older_than="1h")
    assert by_age.deleted == 0 and {j.reason for j in by_age.jobs} == {"too_recent", "not_ended", "running"}
    assert jobs.delete(job_id=done).deleted == 1
    assert jobs.delete(job_id=created).deleted == 1
    assert jobs.store.job_ids() == [running]
    with pytest.raises(JobError):
        jobs.delete()


def test_start_of_a_started_job_is_invalid_state(jobs: Jobs) -> None:
    job_id = jobs.run(command="true").job_id
    with pytest.raises(JobError) as refused:
        jobs.start(job_id=job_id)
    assert refused.value.code == "invalid_state"
    with pytest.raises(JobError) as not_started:
        jobs.kill(job_id=jobs.create(command="true").job_id)
    assert not_started.value.code == "invalid_state"


def test_wait_deadline_leaves_the_job_running(jobs: Jobs) -> None:
    job_id = jobs.run(command="sleep 30", wait_seconds=0).job_id
    result = jobs.wait(job_id=job_id, wait_seconds=0.2)
    assert (result.state, result.timed_out) == ("running", True)
    assert result.snapshot is not None and result.final_snapshot is None


async def test_async_waits_run_concurrently_with_other_calls(root: Path, jobs: Jobs, tmp_path: Path) -> None:
    import anyio

    go = Fifo(tmp_path / "go")
    ajobs = AsyncJobs(root)
    job_id = (await ajobs.run(command=f"read x < {go}; echo finished", wait_seconds=0)).job_id
    results = {}

    async def waiter(name: str) -> None:
        results[name] = await ajobs.wait(job_id=job_id, wait_seconds=30)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "a")
        tg.start_soon(waiter, "b")
        snap = await ajobs.snapshot(job_id=job_id)
        assert snap.state == "running"
        await anyio.to_thread.run_sync(go.write)
    assert {r.state for r in results.values()} == {"exited"}
    assert results["a"].final_snapshot.stdout_tail == "finished\n"


def test_supervisors_are_reaped(root: Path, jobs: Jobs) -> None:
    result = jobs.run(command="true")
    supervisor = state_of(root, result.job_id)["supervisor_pid"]
    wait_exit(supervisor)
    # The reaper thread waits on the supervisor's pidfd; give it its turn, bounded.
    import time

    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{supervisor}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{supervisor}")


def test_a_supervisor_that_dies_before_acknowledging_fails_the_launch(root: Path, jobs: Jobs) -> None:
    job_id = jobs.create(command="echo never").job_id
    (root / job_id / "wake.fifo").unlink()  # the supervisor cannot open it and dies at start
    with pytest.raises(JobError) as refused:
        jobs.start(job_id=job_id)
    assert refused.value.code == "launch_failed"
    assert "wake.fifo" in refused.value.message
    state = state_of(root, job_id)
    assert state["job"]["status"] == "failed"
    assert state["reason"].startswith("launch_failed: ")
    assert os.path.getsize(root / job_id / "stdout.log") == 0


def test_kill_never_touches_a_process_group_id_now_used_by_others(root: Path, jobs: Jobs) -> None:
    job_id = jobs.run(command="true").job_id
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        path = root / job_id / "state.json"
        state = json.loads(path.read_text())
        state["pid"] = stranger.pid  # as if the job's group id had been recycled
        path.write_text(json.dumps(state))
        assert jobs.kill(job_id=job_id, signal="SIGKILL").signal is None
        assert jobs.delete(job_id=job_id, dry_run=True).jobs[0].action == "would_delete"
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_delete_and_start_racing_never_fail_inside(root: Path, jobs: Jobs) -> None:
    import threading

    for _ in range(5):
        job_id = jobs.create(command="sleep 30").job_id
        outcomes: dict[str, str] = {}

        def start(job_id: str = job_id, outcomes: dict[str, str] = outcomes) -> None:
            try:
                outcomes["start"] = Jobs(root).start(job_id=job_id, wait_seconds=0).state
            except JobError as e:
                outcomes["start"] = e.code

        thread = threading.Thread(target=start)
        thread.start()
        deleted = jobs.delete(job_id=job_id).jobs[0]
        thread.join()
        if deleted.action == "deleted":
            assert outcomes["start"] == "job_not_found"
        else:
            assert (deleted.reason, outcomes["start"]) == ("running", "running")
            jobs.kill(job_id=job_id, signal="SIGKILL")


def test_an_env_file_that_cannot_be_read_at_start_fails_the_job(jobs: Jobs, tmp_path: Path) -> None:
    env_file = tmp_path / "latin1.env"
    env_file.write_bytes(b"NAME=caf\xe9\n")
    result = jobs.run(command="true", env_files=[str(env_file)])
    assert result.state == "failed"
    assert result.reason.startswith("exec_failed: ") and "utf-8" in result.reason
