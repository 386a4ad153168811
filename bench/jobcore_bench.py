"""Engine figures, each beside a plain-``subprocess`` baseline doing the same work in the same run."""

from __future__ import annotations

import os
import select
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from jobcore import Jobs
from jobcore.supervisor import fsio

from . import procfs
from .firstwrite import FirstWrite
from .table import Row

ROUNDS = 20
THROUGHPUT_BYTES = 256 * 1024 * 1024
CONCURRENT_JOBS = 200
TAIL_LOG_BYTES = 1024 * 1024 * 1024


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.2f} ms"


def _launch(jobs: Jobs, work: Path) -> list[Row]:
    """From the call to the command's first instruction (its open of a FIFO, stamped as it
    happens), and to the call's return, once the job's definition is on disk."""
    with FirstWrite(work / "started") as first:
        command = f"echo x > {first.path}"

        def ours() -> tuple[float, float]:
            t0 = time.monotonic()
            jobs.run(command=command, wait_seconds=0)
            returned = time.monotonic() - t0
            return first.stamp() - t0, returned

        def plain() -> tuple[float, float]:
            t0 = time.monotonic()
            proc = subprocess.Popen(["sh", "-c", command])
            returned = time.monotonic() - t0
            took = first.stamp() - t0
            proc.wait()
            return took, returned

        # Interleaved, so both see the same disk weather.
        rounds = [(ours(), plain()) for _ in range(ROUNDS)]
    return [
        Row(
            "launch: call to command running (median)",
            _median_ms([o[0] for o, _ in rounds]),
            _median_ms([p[0] for _, p in rounds]),
            "subprocess.Popen of the same sh -c",
        ),
        Row(
            "  launch: call returned, the definition on disk (median)",
            _median_ms([o[1] for o, _ in rounds]),
            _median_ms([p[1] for _, p in rounds]),
            "subprocess.Popen returned (after the exec)",
        ),
    ]


def _durable(jobs: Jobs) -> list[Row]:
    """What a crash-safe record costs: one record write, with fsync and without."""
    record = {"job": {"id": "0" * 32, "status": "exited"}, "result": {"exit_code": 0}}
    path = str(jobs.store.root / "bench-record.json")

    def write(durable: bool) -> float:
        t0 = time.perf_counter()
        fsio.write_json_atomic(path, record, durable=durable)
        return time.perf_counter() - t0

    # Interleaved, so both see the same disk weather.
    writes = [(write(True), write(False)) for _ in range(ROUNDS * 5)]
    os.unlink(path)
    return [
        Row(
            "durable record write: fsync file + directory (median)",
            _median_ms([d for d, _ in writes]),
            _median_ms([p for _, p in writes]),
            "the same atomic write without fsync",
        ),
    ]


def _exit_notice(jobs: Jobs, work: Path) -> Row:
    """From releasing the command (it exits right after) to ``wait`` returning."""
    go = work / "go"
    os.mkfifo(go)
    command = f"read x < {go}"

    def release() -> float:
        with open(go, "w") as f:
            t0 = time.perf_counter()
            f.write("go\n")
        return t0

    def ours() -> float:
        job_id = jobs.run(command=command, wait_seconds=0).job_id
        t0 = release()
        jobs.wait(job_id=job_id, wait_seconds=10)
        return time.perf_counter() - t0

    def plain() -> float:
        proc = subprocess.Popen(["sh", "-c", command])
        t0 = release()
        proc.wait()
        return time.perf_counter() - t0

    return Row(
        "exit notice: command exit to wait returning (median)",
        _median_ms([ours() for _ in range(ROUNDS)]),
        _median_ms([plain() for _ in range(ROUNDS)]),
        "Popen.wait() on the same command",
        "< 10 ms",
    )


def _wait_supervisor(jobs: Jobs, job_id: str) -> None:
    """Until the job's supervisor has finished (full.log complete): its copying is part of the cost."""
    pid = jobs.store.open(job_id).read_state()["supervisor_pid"]
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def _throughput(jobs: Jobs, work: Path) -> list[Row]:
    command = f"head -c {THROUGHPUT_BYTES} /dev/zero"
    durations: list[float] = []

    def ours() -> float:
        os.sync()  # each run starts with no dirty pages of the one before
        t0 = time.perf_counter()
        result = jobs.run(command=command, wait_seconds=120)
        took = time.perf_counter() - t0
        assert os.path.getsize(result.stdout_log_path) == THROUGHPUT_BYTES
        durations.append(result.duration_ms / 1000)  # the command's own run, launch left out
        _wait_supervisor(jobs, result.job_id)
        jobs.delete(job_id=result.job_id)
        return took

    def plain() -> float:
        out = work / "plain.out"
        os.sync()
        t0 = time.perf_counter()
        subprocess.run(f"{command} > {out}", shell=True, check=True)
        took = time.perf_counter() - t0
        out.unlink()
        return took

    mib = THROUGHPUT_BYTES / 1024 / 1024
    # Interleaved, so both see the same page cache and writeback weather.
    pairs = [(ours(), plain()) for _ in range(5)]
    ours_s = statistics.median(o for o, _ in pairs)
    plain_s = statistics.median(p for _, p in pairs)
    command_s = statistics.median(durations)
    return [
        Row(
            "throughput: 256 MiB, the command's run (median of 5)",
            f"{mib / command_s:.0f} MiB/s ({plain_s / command_s:.2f} of baseline)",
            f"{mib / plain_s:.0f} MiB/s",
            "same command redirected to a file",
            ">= 0.9 of baseline",
        ),
        Row(
            "  the same, call to end (launch included)",
            f"{mib / ours_s:.0f} MiB/s ({plain_s / ours_s:.2f} of baseline)",
            f"{mib / plain_s:.0f} MiB/s",
            "same command redirected to a file",
        ),
    ]


def _concurrent(jobs: Jobs) -> list[Row]:
    t0 = time.perf_counter()
    job_ids = [jobs.run(command="sleep 600", wait_seconds=0).job_id for _ in range(CONCURRENT_JOBS)]
    ours_s = time.perf_counter() - t0
    supervisors = [jobs.store.open(j).read_state()["supervisor_pid"] for j in job_ids]
    rss = [procfs.memory_kib(pid, "Rss") for pid in supervisors]
    pss = [procfs.memory_kib(pid, "Pss") for pid in supervisors]
    private = [procfs.memory_kib(pid, "Private_Dirty") + procfs.memory_kib(pid, "Private_Clean") for pid in supervisors]
    for job_id in job_ids:
        jobs.kill(job_id=job_id, signal="SIGKILL", wait_seconds=10)

    t0 = time.perf_counter()
    procs = [subprocess.Popen(["sleep", "600"], start_new_session=True) for _ in range(CONCURRENT_JOBS)]
    plain_s = time.perf_counter() - t0
    for proc in procs:
        proc.kill()
        proc.wait()
    return [
        Row(
            f"{CONCURRENT_JOBS} concurrent sleep jobs: time to launch all",
            f"{ours_s:.2f} s",
            f"{plain_s:.2f} s",
            f"{CONCURRENT_JOBS} x subprocess.Popen",
        ),
        Row(
            "  resident memory of their supervisors",
            f"{statistics.median(rss) / 1024:.1f} MiB RSS each (max {max(rss) / 1024:.1f}), "
            f"{statistics.median(private) / 1024:.2f} MiB of it private; "
            f"all {CONCURRENT_JOBS}: {sum(pss) / 1024:.0f} MiB PSS",
            "0",
            "Popen keeps no process beside the command",
            "< 12 MiB each",
        ),
    ]


def _tail(jobs: Jobs, work: Path) -> Row:
    job = jobs.run(command=f"yes 'a line of a long log' | head -c {TAIL_LOG_BYTES}", wait_seconds=120)
    path = job.stdout_log_path
    assert os.path.getsize(path) == TAIL_LOG_BYTES

    def timed(fn: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def plain() -> None:
        with open(path, "rb") as f:
            f.seek(-65536, os.SEEK_END)
            f.read().splitlines()[-50:]

    return Row(
        "tail of a 1 GiB log: snapshot, 50 lines (median)",
        _median_ms([timed(lambda: jobs.snapshot(job_id=job.job_id)) for _ in range(50)]),
        _median_ms([timed(plain) for _ in range(50)]),
        "seek to the last 64 KiB, read, split",
        "< 5 ms",
    )


def measure() -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="agent-jobs-bench-"))
    try:
        jobs = Jobs(work / "jobs")
        return [
            *_launch(jobs, work),
            *_durable(jobs),
            _exit_notice(jobs, work),
            *_throughput(jobs, work),
            *_concurrent(jobs),
            _tail(jobs, work),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
