"""Jobs on Slurm: submission to the command's first instruction, and its exit to ``wait``'s return.

Each beside what Slurm alone gives: a plain ``sbatch --wrap`` of the same command, and a job's
end noticed by asking ``scontrol`` every :data:`jobcore.slurm.POLL_S` (our own poll period).
Without a cluster that answers, one row says why nothing was measured.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from jobcore import Jobs
from jobcore.slurm import POLL_S, commands, record

from .table import Row

ROUNDS = 5
#: Time given to the wait to be waiting before the job is let go.
SETTLE_S = 0.2


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.0f} ms"


def _read_line(fifo: Path) -> float:
    """Block until a writer puts a line in ``fifo``; when it did."""
    with open(fifo) as f:
        f.readline()
    return time.perf_counter()


def _settled(slurm_id: str) -> None:
    """Wait until Slurm has let go of a job: one still completing would delay the next round's start."""
    while (found := record.query(slurm_id)) is not None and found.active:
        time.sleep(0.05)
    while "COMPLETING" in subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout:
        time.sleep(0.05)


def _first_instruction(jobs: Jobs, work: Path, n: int) -> float:
    fifo = work / f"first{n}"
    os.mkfifo(fifo)
    begun = time.perf_counter()
    run = jobs.run(command=f"echo up > {fifo}", backend="slurm", wait_seconds=0)
    took = _read_line(fifo) - begun
    assert run.slurm is not None and run.slurm.job_id is not None
    _settled(run.slurm.job_id)
    return took


def _sbatch(wrap: str) -> str:
    done = subprocess.run(
        ["sbatch", "--parsable", "--output=/dev/null", f"--wrap={wrap}"], check=True, capture_output=True, text=True
    )
    return done.stdout.strip().split(";")[0]


def _first_instruction_plain(work: Path, n: int) -> float:
    fifo = work / f"plain{n}"
    os.mkfifo(fifo)
    begun = time.perf_counter()
    slurm_id = _sbatch(f"echo up > {fifo}")
    took = _read_line(fifo) - begun
    _settled(slurm_id)
    return took


def _release(gate: Path) -> float:
    with open(gate, "w") as f:
        f.write("go\n")
    return time.perf_counter()


def _exit_to_wait(jobs: Jobs, work: Path, n: int) -> float:
    gate = work / f"gate{n}"
    os.mkfifo(gate)
    run = jobs.run(command=f"read x < {gate}", backend="slurm", wait_seconds=0)
    job_id = run.job_id
    returned: list[float] = []
    thread = threading.Thread(
        target=lambda: (jobs.wait(job_id=job_id, wait_seconds=60), returned.append(time.perf_counter()))
    )
    thread.start()
    time.sleep(SETTLE_S)
    released = _release(gate)
    thread.join()
    assert run.slurm is not None and run.slurm.job_id is not None
    _settled(run.slurm.job_id)
    return returned[0] - released


def _exit_to_scontrol(work: Path, n: int) -> float:
    gate = work / f"plaingate{n}"
    os.mkfifo(gate)
    slurm_id = _sbatch(f"read x < {gate}")
    released = _release(gate)  # blocks until the job has opened the gate: it runs
    while (found := record.query(slurm_id)) is not None and found.active:
        time.sleep(POLL_S)
    took = time.perf_counter() - released
    _settled(slurm_id)
    return took


def measure() -> list[Row]:
    problem = commands.cluster_problem()
    if problem is not None:
        return [Row("slurm: submit to first instruction, exit to wait", f"skipped: {problem}", "-", "-")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jobs = Jobs(work / "jobs")
        warm = jobs.run(command="true", backend="slurm", wait_seconds=30)  # the shared-storage probe, once
        assert warm.slurm is not None and warm.slurm.job_id is not None
        _settled(warm.slurm.job_id)
        first = [_first_instruction(jobs, work, n) for n in range(ROUNDS)]
        first_plain = [_first_instruction_plain(work, n) for n in range(ROUNDS)]
        ended = [_exit_to_wait(jobs, work, n) for n in range(ROUNDS)]
        ended_plain = [_exit_to_scontrol(work, n) for n in range(ROUNDS)]
    return [
        Row(
            "slurm: submit to first instruction (median)",
            _median_ms(first),
            _median_ms(first_plain),
            "sbatch --wrap of the same command",
        ),
        Row(
            "slurm: exit to wait returned (median)",
            _median_ms(ended),
            _median_ms(ended_plain),
            f"scontrol asked every {POLL_S:g} s",
            "<= 1 s",
        ),
    ]
