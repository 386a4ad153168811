"""Jobs on Slurm: a real single-node cluster (``.ci/slurm-up``), never a mock of its commands.

The cluster tests are marked ``slurm`` (``-m "not slurm"`` deselects them) and skip when no
cluster answers, except under ``CI``, where they fail instead. They share one job store, so
the shared-storage probe runs once; every Slurm job a test submits is gone when it ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_helpers import cli
from helpers import REPO, Fifo, StdioServer, wait_exit
from mcp import Client

from jobcore import JobError, Jobs, Policy
from jobcore.slurm import POLL_S, commands, jobfile, record
from jobcore.store import JobDir
from jobcore.times import epoch
from jobcore.verbs._observe import wait_for_end
from server import config

#: Generous: Slurm schedules a job within a second or two, more on a loaded machine.
SLURM_WAIT_S = 30.0


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = commands.cluster_problem()
    if problem is None:
        return
    message = f"no Slurm cluster answers ({problem}); start one with .ci/slurm-up (as root)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def slurm_root(tmp_path_factory: pytest.TempPathFactory, cluster: None) -> Path:
    return tmp_path_factory.mktemp("slurm") / "jobs"


def _slurm_ids(root: Path) -> list[str]:
    return [i for d in root.glob("*") if (i := jobfile.job_id(d)) is not None]


def slurm_gone(slurm_id: str, timeout: float = SLURM_WAIT_S) -> record.SlurmJob | None:
    """Slurm's last word on a job once it no longer runs (Slurm has no event to wait on: asked often)."""
    deadline = time.monotonic() + timeout
    while True:
        found = record.query(slurm_id)
        if found is None or not found.active:
            return found
        assert time.monotonic() < deadline, f"Slurm job {slurm_id} still {found.state} after {timeout} s"
        time.sleep(0.1)


@pytest.fixture
def jobs(slurm_root: Path) -> Iterator[Jobs]:
    """The engine over the shared store; at the end, every Slurm job still there is cancelled and gone."""
    before = set(_slurm_ids(slurm_root))
    yield Jobs(slurm_root)
    for slurm_id in set(_slurm_ids(slurm_root)) - before:
        subprocess.run(["scancel", slurm_id], capture_output=True, timeout=30)
        slurm_gone(slurm_id)


@pytest.mark.slurm
def test_run_returns_output_and_exit_code_as_a_local_job_does(jobs: Jobs) -> None:
    run = jobs.run(command="echo out; echo err >&2; exit 3", backend="slurm", wait_seconds=SLURM_WAIT_S)
    assert run.state == "exited" and run.exit_code == 3, run
    assert run.final_snapshot is not None
    assert (run.final_snapshot.stdout_tail, run.final_snapshot.stderr_tail) == ("out\n", "err\n")
    assert run.backend == "slurm" and run.slurm is not None and run.slurm.job_id.isdigit()
    job_dir = Path(jobs.root) / run.job_id
    for name in ("meta.json", "state.json", "stdout.log", "stderr.log", "full.log", "completion_event.json"):
        assert (job_dir / name).is_file(), name  # the files a local job leaves
    assert json.loads((job_dir / "completion_event.json").read_text())["exit_code"] == 3

    listed = {entry.job_id: entry for entry in jobs.list(all=True).jobs}[run.job_id]
    assert listed.backend == "slurm" and listed.slurm is not None and listed.slurm.job_id == run.slurm.job_id

    again = jobs.restart(job_id=run.job_id, wait_seconds=SLURM_WAIT_S)  # the same backend, a new Slurm job
    assert again.state == "exited" and again.exit_code == 3
    assert again.slurm is not None and again.slurm.job_id != run.slurm.job_id


@pytest.mark.slurm
def test_wait_returns_within_a_second_of_the_end(jobs: Jobs, tmp_path: Path) -> None:
    started, release = Fifo(tmp_path / "started"), Fifo(tmp_path / "release")
    run = jobs.run(command=f"echo up > {started}; read x < {release}; exit 4", backend="slurm", wait_seconds=0)
    assert run.state in ("queued", "running")
    started.read(timeout=SLURM_WAIT_S)
    returned: dict[str, Any] = {}

    def wait() -> None:
        returned["payload"] = jobs.wait(job_id=run.job_id, wait_seconds=SLURM_WAIT_S)
        returned["at"] = time.time()

    waiter = threading.Thread(target=wait)
    waiter.start()
    release.write()
    waiter.join(timeout=SLURM_WAIT_S + 10)
    waited = returned["payload"]
    assert waited.state == "exited" and waited.exit_code == 4
    assert returned["at"] - epoch(waited.finished_at) < 1.0


def test_a_slurm_job_is_looked_at_every_poll_period(tmp_path: Path) -> None:
    """Across hosts the wake FIFO cannot wake us: a wait on a Slurm job never sleeps longer than POLL_S."""
    jd = JobDir(tmp_path, "ab" * 16)
    jd.path.mkdir()
    jd.write_state("created")
    os.mkfifo(jd.file("wake.fifo"))
    jobfile.write(jd.path, {})
    step = next(wait_for_end(jd, time.monotonic() + 60))
    assert step.timeout is not None and step.timeout <= POLL_S


@pytest.mark.slurm
def test_kill_of_a_running_job_ends_it_and_records_killed(jobs: Jobs, tmp_path: Path) -> None:
    started = Fifo(tmp_path / "started")
    run = jobs.run(command=f"echo up > {started}; exec sleep 600", backend="slurm", wait_seconds=0)
    started.read(timeout=SLURM_WAIT_S)
    killed = jobs.kill(job_id=run.job_id, wait_seconds=SLURM_WAIT_S)
    assert killed.state == "killed" and killed.end_signal == "SIGTERM" and killed.reason == "killed", killed
    assert killed.slurm is not None
    assert slurm_gone(killed.slurm.job_id) is not None  # Slurm let go of it


@pytest.mark.slurm
def test_a_queued_job_shows_slurms_reason_and_can_be_killed(jobs: Jobs) -> None:
    run = jobs.run(command="echo ran", backend="slurm", slurm={"extra_args": ["--hold"]}, wait_seconds=0)
    assert run.state == "queued"
    snap = jobs.snapshot(job_id=run.job_id)
    assert snap.state == "queued" and snap.slurm is not None
    assert (snap.slurm.state, snap.slurm.reason) == ("PENDING", "JobHeldUser")
    assert jobs.delete(job_id=run.job_id).jobs[0].reason == "queued"  # still Slurm's: kept

    killed = jobs.kill(job_id=run.job_id)
    assert killed.state == "killed" and killed.reason == "killed"
    assert slurm_gone(snap.slurm.job_id).state == "CANCELLED"
    assert jobs.snapshot(job_id=run.job_id).snapshot.stdout_tail == ""  # it never ran
    assert jobs.delete(job_id=run.job_id).deleted == 1


@pytest.mark.slurm
def test_a_job_queued_behind_one_that_fills_the_node_can_be_killed(jobs: Jobs, tmp_path: Path) -> None:
    started = Fifo(tmp_path / "started")
    cpus = int(subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()[0])
    whole_node = {"cpus": cpus}
    first = jobs.run(command=f"echo up > {started}; exec sleep 600", backend="slurm", slurm=whole_node, wait_seconds=0)
    started.read(timeout=SLURM_WAIT_S)
    second = jobs.run(command="echo ran", backend="slurm", slurm=whole_node, wait_seconds=0)
    assert second.state == "queued" and second.slurm is not None and second.slurm.state == "PENDING"
    killed = jobs.kill(job_id=second.job_id)
    assert killed.state == "killed" and slurm_gone(second.slurm.job_id).state == "CANCELLED"
    assert jobs.kill(job_id=first.job_id, wait_seconds=SLURM_WAIT_S).state == "killed"
    assert jobs.snapshot(job_id=second.job_id).snapshot.stdout_tail == ""  # it never ran


@pytest.mark.slurm
def test_a_timeout_is_enforced_by_the_supervisor_and_backed_by_slurms_time_limit(jobs: Jobs) -> None:
    run = jobs.run(command="exec sleep 600", backend="slurm", timeout=1, kill_after=1, wait_seconds=SLURM_WAIT_S)
    assert run.state == "killed" and run.reason == "timeout" and run.signal == "SIGTERM", run
    assert run.slurm is not None
    shown = subprocess.run(["scontrol", "-o", "show", "job", run.slurm.job_id], capture_output=True, text=True)
    assert "TimeLimit=00:02:00" in shown.stdout  # 1 s + 1 s + a minute's margin, rounded up to minutes


@pytest.mark.slurm
def test_a_supervisor_that_cannot_start_on_the_node_is_failed_with_slurms_reason(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_JOBS_SLURM_PYTHON", "/nonexistent/python3")
    run = jobs.run(command="echo never", backend="slurm", wait_seconds=SLURM_WAIT_S)
    assert run.state == "failed", run
    assert run.reason is not None and run.reason.startswith("slurm_lost: the supervisor never started")
    assert "FAILED" in run.reason and "/nonexistent/python3" in run.reason  # Slurm's state, slurm.out's words


@pytest.mark.slurm
def test_a_new_server_reports_a_slurm_job_the_killed_server_submitted(
    slurm_root: Path, jobs: Jobs, tmp_path: Path
) -> None:
    started, release = Fifo(tmp_path / "started"), Fifo(tmp_path / "release")
    cwd = tmp_path / "work"
    cwd.mkdir()
    server = StdioServer(slurm_root, cwd)
    try:
        server.initialize()
        command = f"echo up > {started}; read x < {release}; echo after $x; exit 5"
        arguments = {"command": command, "backend": "slurm", "wait_seconds": 0}
        run = server.request(2, "tools/call", {"name": "run_job", "arguments": arguments})
        job_id = run["result"]["structuredContent"]["job_id"]
        started.read(timeout=SLURM_WAIT_S)
        server.proc.kill()
        wait_exit(server.proc.pid)
    finally:
        server.close()
    release.write("go")

    async def reattach() -> dict[str, Any]:
        from mcp import StdioServerParameters

        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "server", "serve", "--root", str(slurm_root)],
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)},
            cwd=str(cwd),
        )
        async with Client(params, mode="legacy") as client:
            result = await client.call_tool("wait", {"job_id": job_id, "wait_seconds": SLURM_WAIT_S})
            return result.structured_content or {}

    waited = anyio.run(reattach)
    assert waited["state"] == "exited" and waited["exit_code"] == 5, waited
    assert waited["final_snapshot"]["stdout_tail"] == "after go\n"
    assert waited["backend"] == "slurm" and waited["slurm"]["job_id"].isdigit()


@pytest.mark.slurm
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_a_store_the_nodes_do_not_share_is_refused_and_nothing_is_created(cluster: None, tmp_path: Path) -> None:
    """The server's root is a tmpfs in a mount namespace of its own: the node writes the probe elsewhere."""
    root = tmp_path / "private"
    root.mkdir(mode=0o700)
    script = (
        "import json, os\n"
        "from jobcore import JobError, Jobs\n"
        f"jobs = Jobs({str(root)!r})\n"
        "try:\n"
        "    jobs.run(command='true', backend='slurm', wait_seconds=0)\n"
        "except JobError as exc:\n"
        "    print(json.dumps({'code': exc.code, 'message': exc.message, 'left': os.listdir(jobs.root)}))\n"
    )
    in_namespace = 'mount -t tmpfs -o mode=0700 tmpfs "$1" && exec "$2" -c "$3"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", in_namespace, "sh", root, sys.executable, script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    refused = json.loads(done.stdout)
    assert refused["code"] == "backend_unavailable", refused
    assert "not on storage the Slurm nodes share" in refused["message"]
    assert refused["left"] == []  # no job was made


def test_extra_args_that_override_ours_are_refused_naming_the_value(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path / "jobs")
    for arg in ("--output=/tmp/x", "--out=/tmp/x", "-pother", "--partition=other", "--wrap=true", "positional"):
        with pytest.raises(JobError) as caught:
            jobs.create(command="true", backend="slurm", slurm={"extra_args": ["--hold", arg]})
        assert caught.value.code == "invalid_input"
        assert caught.value.details["field"] == "slurm.extra_args" and repr(arg) in caught.value.message
    with pytest.raises(JobError) as caught:
        jobs.create(command="true", slurm={"partition": "debug"})  # options, but the local backend
    assert caught.value.code == "invalid_input" and caught.value.details["field"] == "slurm"
    assert jobs.store.job_ids() == []


def test_the_policy_restricts_backends_and_partitions(tmp_path: Path) -> None:
    local_only = Jobs(tmp_path / "a", policy=Policy(backends=["local"]))
    with pytest.raises(JobError) as caught:
        local_only.run(command="true", backend="slurm")
    assert caught.value.code == "policy_denied" and caught.value.details["rule"] == "backends"
    assert local_only.store.job_ids() == []

    debug_only = Jobs(tmp_path / "b", policy=Policy(slurm_partitions=["debug"]))
    for slurm in ({"partition": "other"}, {}):
        with pytest.raises(JobError) as caught:
            debug_only.create(command="true", backend="slurm", slurm=slurm)
        assert caught.value.code == "policy_denied" and caught.value.details["rule"] == "slurm_partitions"
    assert debug_only.store.job_ids() == []


@pytest.mark.slurm
def test_the_cli_runs_on_slurm_and_lists_the_slurm_id(slurm_root: Path, jobs: Jobs, tmp_path: Path) -> None:
    done = cli(slurm_root, "run", "--partition", "debug", "--wait", "echo from slurm", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "from slurm\n", done.stderr
    [ran] = [e for e in jobs.list(cwd=str(tmp_path)).jobs]
    assert ran.backend == "slurm" and ran.slurm is not None
    listed = cli(slurm_root, "ls", cwd=tmp_path)
    header, row = listed.stdout.splitlines()[:2]
    assert "SLURM" in header.split() and ran.slurm.job_id in row.split()
    shown = cli(slurm_root, "show", ran.job_id, "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["slurm"]["job_id"] == ran.slurm.job_id
    refused = cli(slurm_root, "run", "--backend", "local", "--cpus", "2", "true", cwd=tmp_path)
    assert refused.returncode == 2 and "--backend slurm" in refused.stderr


def test_the_servers_default_backend_comes_from_the_flag_or_the_environment(tmp_path: Path) -> None:
    assert config.parse([], {}).backend == "local"
    assert config.parse([], {"AGENT_JOBS_BACKEND": "slurm"}).backend == "slurm"
    assert config.parse(["--backend", "local"], {"AGENT_JOBS_BACKEND": "slurm"}).backend == "local"
    with pytest.raises(config.ConfigError, match="AGENT_JOBS_BACKEND='lsf'"):
        config.parse([], {"AGENT_JOBS_BACKEND": "lsf"})
    # A job that does not say runs on the default: here refused as a Slurm job, before anything is made.
    jobs = Jobs(tmp_path / "jobs", policy=Policy(backends=["local"]), backend="slurm")
    with pytest.raises(JobError) as caught:
        jobs.create(command="true")
    assert caught.value.details["rule"] == "backends" and caught.value.details["value"] == "slurm"
    assert jobs.create(command="true", backend="local").state == "created"


@pytest.mark.slurm
def test_a_partition_slurm_refuses_is_invalid_input_and_nothing_is_created(cluster: None, tmp_path: Path) -> None:
    jobs = Jobs(tmp_path / "jobs")
    with pytest.raises(JobError) as caught:
        jobs.run(command="true", backend="slurm", slurm={"partition": "no-such-partition"})
    assert caught.value.code == "invalid_input" and caught.value.details["field"] == "slurm"
    assert "partition" in caught.value.message
    assert jobs.store.job_ids() == []


@pytest.mark.slurm
@pytest.mark.parametrize(("asked", "recorded"), [("SIGTERM", "killed"), ("SIGUSR1", "failed")])
def test_a_job_slurm_no_longer_knows_is_ended_killed_only_if_a_kill_was_asked_for(
    cluster: None, tmp_path: Path, asked: str, recorded: str
) -> None:
    jd = JobDir(tmp_path, "cd" * 16)
    jd.path.mkdir()
    jd.write_state("running")
    jobfile.write(jd.path, {"job_id": "999999999"})  # an id Slurm never gave
    (jd.path / "kill.json").write_text(json.dumps({"signal": asked, "requested_at": "2026-01-01T00:00:00.000Z"}))
    state = jd.observed_state()
    assert state["job"]["status"] == recorded
    assert recorded == "killed" or state["reason"] == "slurm_lost: Slurm job 999999999 is unknown to Slurm"
