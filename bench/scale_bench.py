"""Many jobs through one MCP server over stdio, each figure beside ``subprocess.Popen`` in the same run.

- N ``sleep 600`` jobs launched by N concurrent ``run_job`` calls: until every call returned;
- memory beside them: the server, every supervisor and the fork server that forked them, by
  PSS (shared pages divided among their sharers), per job;
- N concurrent ``kill`` calls: until every call returned (each returns once its job's end is
  recorded), then checked that no process of any job is left;
- the server's CPU (user + system) per job while launching and while killing, beside what the
  whole machine spent busy per job meanwhile: on a shared machine the times above depend on
  everything else running, the server's own CPU far less;
- ``ping`` answered throughout: the slowest of one ping every 50 ms while launching and killing,
  as the client sees it (its own event loop validates every result against the tool's output
  schema, about a millisecond each, so a burst of results delays the ping's answer too);
- a job's first instruction after the ``run_job`` call (median).

N is 200. ``AGENT_JOBS_BENCH_MANY=1000`` (any number) adds the same rows for that many jobs
(1,000 take one to two minutes more on 2 cores).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jobcore.supervisor import procs

from . import procfs
from .firstwrite import FirstWrite
from .table import Row

REPO = Path(__file__).resolve().parent.parent
DEFAULT_JOBS = 200
FIRST_ROUNDS = 20
PING_EVERY_S = 0.05


def _env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), "PYTHONPATH": str(REPO)}


def _server_pids(root: Path) -> list[int]:
    """The server process(es) serving ``root`` (found by its command line)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"serve" in argv and os.fsencode(root) in argv:
                found.append(int(name))
    return found


class _Pinger:
    """Pings the server every :data:`PING_EVERY_S` while running; keeps the slowest answer."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.worst = 0.0
        self.count = 0

    async def run(self) -> None:
        import anyio

        while True:
            t0 = time.perf_counter()
            await self.client.send_ping()
            self.worst = max(self.worst, time.perf_counter() - t0)
            self.count += 1
            await anyio.sleep(PING_EVERY_S)


async def _warm_up(client: Any) -> None:
    """One run_job and one kill first: the SDK client compiles each tool's output schema on its
    first result (a tenth of a second of its event loop), which is not the server's time."""
    job_id = (await client.call_tool("run_job", {"command": "sleep 600", "wait_seconds": 0})).structured_content[
        "job_id"
    ]
    await client.call_tool("kill", {"job_id": job_id, "wait_seconds": 60})


async def _many(client: Any, root: Path, n: int) -> list[Row]:
    import anyio

    await _warm_up(client)
    server = _server_pids(root)
    pinger = _Pinger(client)
    async with anyio.create_task_group() as pings:
        pings.start_soon(pinger.run)
        ids: list[str] = []
        supervisors: list[int] = []

        async def launch() -> None:
            payload = (
                await client.call_tool("run_job", {"command": "sleep 600", "wait_seconds": 0})
            ).structured_content
            ids.append(payload["job_id"])

        cpu0, busy0, t0 = procfs.cpu_s(server), procfs.machine_busy_s(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(launch)
        launch_s = time.perf_counter() - t0
        launch_cpu, launch_busy = procfs.cpu_s(server) - cpu0, procfs.machine_busy_s() - busy0
        import json

        for job_id in ids:
            supervisors.append(json.loads((root / job_id / "state.json").read_text())["supervisor_pid"])
        servers = _server_pids(root)
        fork_servers = {procfs.parent(pid) for pid in supervisors} - {*servers, 0, 1}
        pss = sum(procfs.memory_kib(pid, "Pss") for pid in [*supervisors, *servers, *fork_servers])

        async def kill(job_id: str) -> None:
            payload = (await client.call_tool("kill", {"job_id": job_id, "wait_seconds": 60})).structured_content
            if payload["state"] != "killed":
                not_killed.append(job_id)

        not_killed: list[str] = []
        cpu0, busy0, t0 = procfs.cpu_s(server), procfs.machine_busy_s(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for job_id in ids:
                tg.start_soon(kill, job_id)
        kill_s = time.perf_counter() - t0
        kill_cpu, kill_busy = procfs.cpu_s(server) - cpu0, procfs.machine_busy_s() - busy0
        pings.cancel_scope.cancel()
    left = procs.live_jobs() & set(ids)

    t0 = time.perf_counter()
    plain = [subprocess.Popen(["sleep", "600"], start_new_session=True) for _ in range(n)]
    plain_launch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for proc in plain:
        proc.kill()
    for proc in plain:
        proc.wait()
    plain_kill_s = time.perf_counter() - t0
    return [
        Row(
            f"{n} x sleep 600, concurrent run_job: all returned",
            f"{launch_s:.2f} s",
            f"{plain_launch_s:.2f} s",
            f"{n} x subprocess.Popen",
            "<= 1.5 s (200), <= 10 s (1000)",
        ),
        Row(
            f"  {n} concurrent kill calls: all ended",
            f"{kill_s:.2f} s ({len(not_killed)} not killed, {len(left)} with a process left)",
            f"{plain_kill_s:.2f} s",
            "Popen.kill() then wait() each",
            "<= 2 s (200), <= 5 s (1000)",
        ),
        Row(
            f"  server CPU per job, launching / killing {n}",
            f"{launch_cpu / n * 1000:.1f} ms / {kill_cpu / n * 1000:.1f} ms",
            f"{launch_busy / n * 1000:.1f} ms / {kill_busy / n * 1000:.1f} ms",
            "the whole machine's busy CPU per job meanwhile (every process, all cores)",
            "",
        ),
        Row(
            f"  memory beside {n} jobs: server + supervisors + fork server",
            f"{pss / n / 1024:.2f} MiB PSS per job ({pss / 1024:.0f} MiB in all)",
            "0",
            "Popen keeps no process beside the command",
            "<= 1 MiB PSS per job, <= 1 GiB in all",
        ),
        Row(
            f"  ping while launching and killing {n}",
            f"{pinger.worst * 1000:.1f} ms slowest of {pinger.count}",
            "-",
            "",
            "<= 20 ms",
        ),
    ]


async def _first_instruction(client: Any, work: Path) -> Row:
    """From the call to the command's first instruction: its open of a FIFO, stamped as it happens."""
    ours = []
    plain = []
    with FirstWrite(work / "started") as first:
        command = f"echo x > {first.path}"
        for _ in range(FIRST_ROUNDS):
            t0 = time.monotonic()
            await client.call_tool("run_job", {"command": command, "wait_seconds": 0})
            ours.append(first.stamp() - t0)
            t0 = time.monotonic()
            proc = subprocess.Popen(["sh", "-c", command])
            plain.append(first.stamp() - t0)
            proc.wait()
    return Row(
        "first instruction after the run_job call, stdio (median)",
        f"{statistics.median(ours) * 1000:.2f} ms",
        f"{statistics.median(plain) * 1000:.2f} ms",
        "subprocess.Popen of the same sh -c",
        "<= 8 ms",
    )


async def _measure_async(work: Path, sizes: list[int]) -> list[Row]:
    from mcp import Client, StdioServerParameters

    rows = []
    for n in sizes:
        root = work / f"jobs-{n}"
        cmd = [sys.executable, "-m", "server", "serve", "--root", str(root), "--log-level", "warning"]
        params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=_env())
        async with Client(params, mode="legacy") as client:
            if n == sizes[0]:
                rows.append(await _first_instruction(client, work))
            rows += await _many(client, root, n)
    return rows


def measure() -> list[Row]:
    import anyio

    sizes = [DEFAULT_JOBS]
    if many := os.environ.get("AGENT_JOBS_BENCH_MANY"):
        sizes.append(int(many))
    with tempfile.TemporaryDirectory(prefix="agent-jobs-bench-") as tmp:
        return anyio.run(_measure_async, Path(tmp), sizes)


if __name__ == "__main__":
    from .table import render

    print(render(measure()))
