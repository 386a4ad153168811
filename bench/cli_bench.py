"""The command line's cold start: ``agent-jobs ls`` of a small store beside ``python -c pass``.

Both run as fresh processes, alternately, so the figure includes the interpreter's own start.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobcore import Jobs

from .table import Row

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 9
JOBS = 20


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    begun = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - begun


def measure() -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="agent-jobs-bench-"))
    try:
        jobs = Jobs(work / "jobs")
        for index in range(JOBS):
            jobs.run(command=["true"], cwd=str(work), tags=[f"n{index}"], wait_seconds=30)
        env = {**os.environ, "PYTHONPATH": str(REPO), "AGENT_JOBS_ROOT": str(work / "jobs")}
        ours, plain = [], []
        for _ in range(ROUNDS):
            ours.append(_timed([sys.executable, "-m", "cli", "ls"], work, env))
            plain.append(_timed([sys.executable, "-c", "pass"], work, env))
        return [
            Row(
                f"`agent-jobs ls` cold, {JOBS} jobs (median of {ROUNDS})",
                f"{statistics.median(ours) * 1000:.0f} ms",
                f"{statistics.median(plain) * 1000:.0f} ms",
                "`python -c pass`",
                "< 300 ms",
            )
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
