"""Many jobs at once: kills asked of their supervisors, which signal, escalate and sweep
the processes that left the job's group, with no /proc scan when nothing was left."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import anyio
import pytest
from helpers import Fifo, StdioServer, wait_exit

from jobcore import AsyncJobs, Jobs
from jobcore.supervisor import procs
from jobcore.waiting import ENGINE_THREADS, LAUNCHES_IN_FLIGHT, WaitFor, drive_async

#: Jobs killed at once by the scale test; with launches it stays well under a minute.
MANY = 300


@pytest.fixture
def jobs(job_root: Path) -> Jobs:
    return Jobs(job_root)


def state_of(jobs: Jobs, job_id: str) -> dict:
    return json.loads((jobs.store.root / job_id / "state.json").read_text())


def test_many_jobs_killed_at_once_leave_no_process_and_all_say_killed(job_root: Path) -> None:
    jobs = AsyncJobs(job_root)

    async def scenario() -> tuple[list[str], list, float]:
        ids: list[str] = []
        async with anyio.create_task_group() as tg:
            limiter = anyio.Semaphore(8)

            async def start() -> None:
                async with limiter:
                    ids.append((await jobs.run(command="sleep 600", wait_seconds=0)).job_id)

            for _ in range(MANY):
                tg.start_soon(start)
        begun = time.monotonic()
        killed: list = []
        async with anyio.create_task_group() as tg:

            async def kill(job_id: str) -> None:
                killed.append(await jobs.kill(job_id=job_id, wait_seconds=30))

            for job_id in ids:
                tg.start_soon(kill, job_id)
        return ids, killed, time.monotonic() - begun

    ids, killed, took = anyio.run(scenario)
    assert len(killed) == MANY
    assert {(k.state, k.reason, k.end_signal) for k in killed} == {("killed", "killed", "SIGTERM")}
    assert took < 30, f"{MANY} concurrent kills took {took:.1f} s"
    assert not procs.live_jobs() & set(ids)
    for job_id in ids:
        wait_exit(state_of(Jobs(job_root), job_id)["supervisor_pid"], timeout=30)


def test_kill_reaches_a_process_that_left_the_group(jobs: Jobs, tmp_path: Path) -> None:
    ready = Fifo(tmp_path / "ready")
    pid_file = tmp_path / "escaped.pid"
    started = jobs.run(command=f"setsid sleep 600 & echo $! > {pid_file}; echo x > {ready}; wait", wait_seconds=0)
    ready.read()
    escaped = int(pid_file.read_text())
    assert procs.is_alive(escaped)
    killed = jobs.kill(job_id=started.job_id, wait_seconds=10)
    assert (killed.state, killed.reason) == ("killed", "killed")
    wait_exit(escaped)
    wait_exit(state_of(jobs, started.job_id)["supervisor_pid"])


def test_a_root_that_traps_the_signal_does_not_keep_it_from_a_process_that_left_the_group(
    jobs: Jobs, tmp_path: Path
) -> None:
    """The look for processes outside the group waits for the root to end, but not for ever:
    the escaped process gets the SIGTERM itself, long before the escalation to SIGKILL."""
    ready, termed = Fifo(tmp_path / "ready"), Fifo(tmp_path / "termed")
    escapee = f"setsid sh -c 'trap \"echo x > {termed}; exit\" TERM; while :; do sleep 0.05; done' &"
    command = f"{escapee} trap '' TERM; echo x > {ready}; while :; do sleep 0.05; done"
    started = jobs.run(command=command, wait_seconds=0, kill_after=60)
    ready.read()
    assert jobs.kill(job_id=started.job_id, wait_seconds=0).state == "running"
    termed.read(timeout=10)  # by SIGTERM, from the supervisor's walk: SIGKILL is a minute away
    killed = jobs.kill(job_id=started.job_id, signal="SIGKILL", wait_seconds=10)
    assert (killed.state, killed.reason) == ("killed", "killed")


def test_the_supervisor_acknowledges_a_kill_request_and_other_signals_go_in_order(jobs: Jobs, tmp_path: Path) -> None:
    ready, usr1 = Fifo(tmp_path / "ready"), Fifo(tmp_path / "usr1")
    command = f"trap 'echo x > {usr1}' USR1; echo x > {ready}; while :; do sleep 0.05; done"
    started = jobs.run(command=command, wait_seconds=0)
    ready.read()
    assert jobs.kill(job_id=started.job_id, signal="SIGUSR1").signal == "SIGUSR1"
    usr1.read()
    killed = jobs.kill(job_id=started.job_id, wait_seconds=10)
    assert (killed.state, killed.reason) == ("killed", "killed")
    # Ended by the signal at once: its end record is the answer, no acknowledgement is written.
    assert not (jobs.store.root / started.job_id / "kill.sent").exists()


def test_a_job_that_outlives_the_signal_has_its_kill_acknowledged_then_escalated(jobs: Jobs, tmp_path: Path) -> None:
    ready = Fifo(tmp_path / "ready")
    started = jobs.run(command=f"trap '' TERM; echo x > {ready}; while :; do sleep 0.05; done", kill_after=1)
    ready.read()
    killed = jobs.kill(job_id=started.job_id, wait_seconds=10)
    assert (killed.state, killed.reason, killed.end_signal) == ("killed", "killed", "SIGKILL")
    request = json.loads((jobs.store.root / started.job_id / "kill.json").read_text())
    sent = json.loads((jobs.store.root / started.job_id / "kill.sent").read_text())
    assert (sent["signal"], sent["requested_at"]) == ("SIGTERM", request["requested_at"])


# --- the server under load ---------------------------------------------------------------------


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_a_stdio_server_with_many_launches_in_flight_holds_only_its_few_engine_threads(
    job_root: Path, server_cwd: Path
) -> None:
    """No thread per stdin line or reply, and none per launch waiting for its supervisor: a
    thousand calls at once would otherwise have the event loop wait for the GIL behind them."""
    server = StdioServer(job_root, server_cwd)
    try:
        server.initialize()
        calls = 40
        lines = [
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 100 + n,
                    "method": "tools/call",
                    "params": {"name": "run_job", "arguments": {"command": "sleep 600", "wait_seconds": 0}},
                }
            )
            for n in range(calls)
        ]
        lines.append(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        server.send_line("\n".join(lines))  # one write: the server reads them as one chunk
        replies: dict[int, dict] = {}
        most = 0
        while len(replies) < calls + 1:
            message = server.receive()
            if "id" in message:
                replies[message["id"]] = message
            most = max(most, _threads(server.proc.pid))
        assert replies[1]["result"] == {}
        ids = [replies[100 + n]["result"]["structuredContent"]["job_id"] for n in range(calls)]
        # The event loop, the engine's threads and the one reaping spawned supervisors.
        assert most <= ENGINE_THREADS + 2, f"{most} threads"
        killed = server.request(2, "tools/call", {"name": "kill", "arguments": {"job_ids": ids, "wait_seconds": 30}})[
            "result"
        ]["structuredContent"]
        assert {job["state"] for job in killed["jobs"]} == {"killed"}
        assert not procs.live_jobs() & set(ids)
    finally:
        server.close()


def test_a_stdio_line_longer_than_many_reads_arrives_whole(job_root: Path, server_cwd: Path) -> None:
    """The loop reads stdin in chunks; a request spread over several is joined, once."""
    server = StdioServer(job_root, server_cwd)
    try:
        server.initialize()
        data = "x" * 300_000  # more than four 64 KiB reads
        arguments = {"command": "wc -c", "stdin": data, "wait_seconds": 30}
        reply = server.request(3, "tools/call", {"name": "run_job", "arguments": arguments})
        payload = reply["result"]["structuredContent"]
        assert (payload["state"], payload["final_snapshot"]["stdout_tail"].strip()) == ("exited", str(len(data)))
    finally:
        server.close()


def test_a_cancelled_call_still_ends_a_shielded_wait_and_the_step_after_it() -> None:
    """A launch waiting for its supervisor's acknowledgement learns the outcome even when its
    call is cancelled meanwhile: the wait and the step that reads it run to their end."""
    waiting_r, waiting_w = os.pipe()
    ack_r, ack_w = os.pipe()
    steps: list[str] = []

    def flow():
        os.write(waiting_w, b"x")
        yield WaitFor([ack_r], None, shield=True)
        steps.append(os.read(ack_r, 1).decode())
        yield WaitFor([], None)  # not shielded: the cancellation takes effect here
        steps.append("never")

    async def scenario() -> None:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drive_async, flow)
                await anyio.wait_readable(waiting_r)
                tg.cancel_scope.cancel()
                os.write(ack_w, b"A")

    try:
        anyio.run(scenario)
    finally:
        for fd in (waiting_r, waiting_w, ack_r, ack_w):
            os.close(fd)
    assert steps == ["A"]


def test_launches_in_flight_are_bounded_until_each_watches_its_job() -> None:
    """Calls that launch count as in flight from their start to their first unshielded wait."""
    inside = 0
    most = 0
    counting = threading.Lock()  # the steps run on the engine's threads

    def launch():
        nonlocal inside, most
        with counting:
            inside += 1
            most = max(most, inside)
        yield WaitFor([], 0.01, shield=True)  # the acknowledgement
        with counting:
            inside -= 1
        yield WaitFor([], 0)  # watching the job
        return "launched"

    async def scenario() -> list[str]:
        done: list[str] = []

        async def one() -> None:
            done.append(await drive_async(launch, launches=True))

        async with anyio.create_task_group() as tg:
            for _ in range(3 * LAUNCHES_IN_FLIGHT):
                tg.start_soon(one)
        return done

    assert anyio.run(scenario) == ["launched"] * (3 * LAUNCHES_IN_FLIGHT)
    assert 1 <= most <= LAUNCHES_IN_FLIGHT


# --- the fork server -----------------------------------------------------------------------------


def _parent(pid: int) -> int:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rfind(b")") + 2 :].split()[1])


def _session(pid: int) -> int:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rfind(b")") + 2 :].split()[3])


def test_a_supervisor_is_forked_in_its_own_session_with_the_launch_environment_and_no_socket(
    jobs: Jobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALE_PROBE", "first")
    first = jobs.run(command="echo $SCALE_PROBE", wait_seconds=10)
    monkeypatch.setenv("SCALE_PROBE", "second")
    ready = Fifo(tmp_path / "ready")
    second = jobs.run(command=f"echo $SCALE_PROBE; echo x > {ready}; sleep 600", wait_seconds=0)
    ready.read()
    assert first.final_snapshot is not None and first.final_snapshot.stdout_tail == "first\n"
    assert jobs.snapshot(job_id=second.job_id).snapshot.stdout_tail == "second\n"
    supervisor = state_of(jobs, second.job_id)["supervisor_pid"]
    server = _parent(supervisor)
    assert b"forkserver" in Path(f"/proc/{server}/cmdline").read_bytes()
    assert _session(supervisor) == supervisor
    assert _session(server) == server != _session(os.getpid())
    links = [os.readlink(fd) for fd in Path(f"/proc/{supervisor}/fd").iterdir()]
    assert not [link for link in links if link.startswith("socket:")]
    assert jobs.kill(job_id=second.job_id).state == "killed"


def test_killing_the_fork_server_takes_no_job_with_it_and_a_new_one_is_started(jobs: Jobs, tmp_path: Path) -> None:
    ready = Fifo(tmp_path / "ready")
    started = jobs.run(command=f"echo x > {ready}; sleep 600", wait_seconds=0)
    ready.read()
    supervisor = state_of(jobs, started.job_id)["supervisor_pid"]
    server = _parent(supervisor)
    os.kill(server, signal.SIGKILL)
    wait_exit(server)
    assert jobs.snapshot(job_id=started.job_id).state == "running"
    assert procs.is_alive(supervisor)
    again = jobs.run(command="echo again", wait_seconds=10)
    assert (again.state, again.final_snapshot.stdout_tail) == ("exited", "again\n")
    assert _parent(state_of(jobs, again.job_id)["supervisor_pid"]) not in (server, os.getpid())
    killed = jobs.kill(job_id=started.job_id, wait_seconds=10)
    assert (killed.state, killed.reason) == ("killed", "killed")
    wait_exit(supervisor)


def test_without_the_fork_server_the_supervisor_is_spawned(
    jobs: Jobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_JOBS_FORKSERVER", "0")
    ready = Fifo(tmp_path / "ready")
    started = jobs.run(command=f"echo x > {ready}; sleep 600", wait_seconds=0)
    ready.read()
    supervisor = state_of(jobs, started.job_id)["supervisor_pid"]
    assert _parent(supervisor) == os.getpid()
    assert os.fsencode(jobs.store.root / started.job_id) in Path(f"/proc/{supervisor}/cmdline").read_bytes()
    assert not (jobs.store.root / ".forkserver.sock").exists()
    assert jobs.kill(job_id=started.job_id).state == "killed"


def test_a_forked_supervisor_gets_the_launcher_s_resource_limits(jobs: Jobs) -> None:
    import resource

    first = jobs.run(command="ulimit -n", wait_seconds=10)  # starts the fork server
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = min(soft, 512) - 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
    try:
        second = jobs.run(command="ulimit -n", wait_seconds=10)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert first.final_snapshot is not None and second.final_snapshot is not None
    assert first.final_snapshot.stdout_tail == f"{soft}\n"
    assert second.final_snapshot.stdout_tail == f"{lower}\n"
