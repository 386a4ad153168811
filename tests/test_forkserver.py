"""The fork server: a spare supervisor waits forked ahead of each launch, leaves with the
server, and is given the launch's environment without it ever becoming the process's own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import Fifo, wait_exit

from jobcore import Jobs
from jobcore.supervisor import forkserver, procs, warmup

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def jobs(job_root: Path) -> Jobs:
    return Jobs(job_root)


def _supervisor(jobs: Jobs, job_id: str) -> int:
    return json.loads((jobs.store.root / job_id / "state.json").read_text())["supervisor_pid"]


def _parent(pid: int) -> int:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rfind(b")") + 2 :].split()[1])


def _live_children(pid: int) -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit() and procs.is_alive(int(name)):
            try:
                if _parent(int(name)) == pid:
                    found.add(int(name))
            except (OSError, ValueError):
                continue
    return found


def _spare_of(server: int, supervisors: set[int]) -> int:
    """The spare the fork server forks once its last one took a launch (within a few seconds)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if spares := _live_children(server) - supervisors:
            (spare,) = spares
            return spare
        time.sleep(0.01)
    raise AssertionError(f"fork server {server} forked no spare")


def _second_launch_taken_by_the_spare(jobs: Jobs, tmp_path: Path, word: str) -> tuple[str, int, int]:
    """A running job, then a second launch (``echo word``), which the spare forked meanwhile
    takes and runs as any other: the first job's id, its supervisor and the fork server."""
    ready = Fifo(tmp_path / "ready")
    first = jobs.run(command=f"echo x > {ready}; sleep 600", wait_seconds=0)
    ready.read()
    first_supervisor = _supervisor(jobs, first.job_id)
    server = _parent(first_supervisor)
    spare = _spare_of(server, {first_supervisor})
    second = jobs.run(command=f"echo {word}", wait_seconds=10)
    assert (second.state, second.final_snapshot.stdout_tail) == ("exited", f"{word}\n")
    assert _supervisor(jobs, second.job_id) == spare
    return first.job_id, first_supervisor, server


def test_a_spare_waits_for_the_next_launch_and_becomes_its_supervisor(jobs: Jobs, tmp_path: Path) -> None:
    first, _, _ = _second_launch_taken_by_the_spare(jobs, tmp_path, "second")
    assert jobs.kill(job_id=first, wait_seconds=10).state == "killed"


def test_the_spare_leaves_with_a_killed_fork_server_and_the_jobs_carry_on(jobs: Jobs, tmp_path: Path) -> None:
    ready = Fifo(tmp_path / "ready")
    started = jobs.run(command=f"echo x > {ready}; sleep 600", wait_seconds=0)
    ready.read()
    supervisor = _supervisor(jobs, started.job_id)
    server = _parent(supervisor)
    spare = _spare_of(server, {supervisor})
    os.kill(server, signal.SIGKILL)
    wait_exit(server)
    wait_exit(spare)  # no process is left behind waiting for launches that cannot come
    assert jobs.snapshot(job_id=started.job_id).state == "running"
    killed = jobs.kill(job_id=started.job_id, wait_seconds=10)
    assert (killed.state, killed.reason) == ("killed", "killed")


def test_a_notify_command_s_shell_is_found_on_the_job_s_path_not_the_fork_server_s(
    jobs: Jobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The forked supervisor's own environment stays the fork server's (PATH=/bin:/usr/bin): the
    # wrapper, named without a slash, is only on the PATH the launch hands the job.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shell = bin_dir / "job-only-sh"
    shell.write_text('#!/bin/sh\nexec /bin/sh "$@"\n')
    shell.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    delivered = tmp_path / "delivered"
    run = jobs.run(
        command="echo out",
        shell_wrapper=["job-only-sh", "-c"],
        notify_command=f"cat > {delivered}",
        wait_seconds=10,
    )
    assert (run.state, run.final_snapshot.stdout_tail) == ("exited", "out\n")
    wait_exit(_supervisor(jobs, run.job_id), timeout=30)
    event = json.loads(delivered.read_text())
    assert (event["job_id"], event["event_type"]) == (run.job_id, "job.finished")
    recorded = json.loads((jobs.store.root / run.job_id / "completion_event.json").read_text())
    assert [(d["sink"], d["ok"]) for d in recorded["delivery_results"]] == [("command", True)]


def test_the_warm_up_leaves_no_directory_descriptor_or_subreaper_behind(jobs: Jobs, tmp_path: Path) -> None:
    # The first launch's spare is forked before the warm-up, and may be done before it ends.
    assert jobs.run(command="true", wait_seconds=10).state == "exited"
    # One spare, forked once the warm-up is done: the launch it takes runs as any other.
    first, first_supervisor, server = _second_launch_taken_by_the_spare(jobs, tmp_path, "warm")
    assert not [name for name in os.listdir(jobs.store.root) if name.startswith(warmup.WARM_UP_PREFIX)]
    links = [os.readlink(f"/proc/{server}/fd/{fd}") for fd in os.listdir(f"/proc/{server}/fd")]
    assert not [link for link in links if link.endswith("(deleted)") or str(jobs.store.root) in link]
    # Its own: the signal, spare-taken and lifeline pipes, and one the launcher may leave it.
    assert len([link for link in links if link.startswith("pipe:")]) <= 7, links
    # No subreaper: a job whose supervisor is killed is not taken in by the fork server.
    job_root = json.loads((jobs.store.root / first / "state.json").read_text())["pid"]
    os.kill(first_supervisor, signal.SIGKILL)
    wait_exit(first_supervisor)
    assert _parent(job_root) != server
    jobs.kill(job_id=first, wait_seconds=10)  # a lost supervisor: its job is ended all the same
    wait_exit(job_root)


def _merges_any(pid: int) -> bool:
    return "ksm_merge_any: yes" in Path(f"/proc/{pid}/ksm_stat").read_text()


@pytest.mark.skipif(not Path("/proc/self/ksm_stat").exists(), reason="needs a kernel with KSM (6.4 or later)")
@pytest.mark.parametrize("setting", ["1", None])
def test_supervisors_opt_into_same_page_merging_only_when_asked(
    jobs: Jobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str | None
) -> None:
    if setting is None:
        monkeypatch.delenv(forkserver.MERGE_PAGES_VAR, raising=False)
    else:
        monkeypatch.setenv(forkserver.MERGE_PAGES_VAR, setting)
    ready = Fifo(tmp_path / "ready")
    started = jobs.run(command=f"echo x > {ready}; sleep 600", wait_seconds=0)
    ready.read()
    supervisor = _supervisor(jobs, started.job_id)
    assert _merges_any(supervisor) is (setting == "1")
    assert _merges_any(_parent(supervisor)) is (setting == "1")  # the fork server
    assert jobs.kill(job_id=started.job_id, wait_seconds=10).state == "killed"


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_a_fork_server_older_than_the_code_on_disk_steps_aside_for_a_new_one(job_root: Path, tmp_path: Path) -> None:
    """An upgrade while a fork server runs: the next launch is refused by it (and spawns its
    supervisor itself), the old fork server exits, and the launch after starts a new one."""
    install = tmp_path / "install"
    shutil.copytree(REPO / "jobcore", install / "jobcore", ignore=shutil.ignore_patterns("__pycache__"))
    launcher = (
        "import sys; from jobcore import Jobs; print(Jobs(sys.argv[1]).run(command='sleep 600', wait_seconds=0).job_id)"
    )

    def launch() -> str:
        done = subprocess.run(
            [sys.executable, "-c", launcher, str(job_root)],
            cwd=install,
            env={**os.environ, "PYTHONPATH": str(install)},
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    jobs = Jobs(job_root)
    first = launch()
    old_server = _parent(_supervisor(jobs, first))
    assert str(install) in _cmdline(old_server) and "supervisor.forkserver" in _cmdline(old_server)
    module = install / "jobcore" / "supervisor" / "follow.py"
    module.write_text(module.read_text() + "\n")  # the upgrade
    second = launch()
    assert "supervisor.main" in _cmdline(_supervisor(jobs, second))  # spawned: the fork server refused
    wait_exit(old_server)
    third = launch()
    new_server = _parent(_supervisor(jobs, third))
    assert new_server != old_server and "supervisor.forkserver" in _cmdline(new_server)
    for job_id in (first, second, third):
        assert jobs.kill(job_id=job_id, wait_seconds=10).state == "killed"
