"""Agent loops: a wait until a line matches, and a wait for the first of many jobs to end.

Each is timed from the moment the test lets the job go (a line written to a FIFO the job
reads) to the call's return, beside a plain process whose pipe or exit is waited on directly.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from jobcore import Jobs

from .table import Row

ROUNDS = 20
MANY_JOBS = 6
#: Time given to the call to be waiting before the job is let go.
SETTLE_S = 0.05


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.2f} ms"


def _release(gate: Path) -> float:
    with open(gate, "w") as f:
        f.write("go\n")
    return time.perf_counter()


def _timed_call(call: Callable[[], object], gate: Path) -> float:
    """From the gate's release to ``call``'s return, the call made in a thread first."""
    returned: list[float] = []
    thread = threading.Thread(target=lambda: (call(), returned.append(time.perf_counter())))
    thread.start()
    time.sleep(SETTLE_S)
    released = _release(gate)
    thread.join()
    return returned[0] - released


def _until_once(jobs: Jobs, work: Path, n: int) -> float:
    gate = work / f"until{n}"
    os.mkfifo(gate)
    job_id = jobs.run(command=f"read x < {gate}; echo 'Listening on :8080'; exec sleep 60", wait_seconds=0).job_id
    took = _timed_call(lambda: jobs.wait(job_id=job_id, until={"pattern": "Listening on"}, wait_seconds=30), gate)
    jobs.kill(job_id=job_id, signal="SIGKILL")
    return took


def _until_plain(work: Path, n: int) -> float:
    gate = work / f"plain{n}"
    os.mkfifo(gate)
    proc = subprocess.Popen(
        ["sh", "-c", f"read x < {gate}; echo 'Listening on :8080'; exec sleep 60"], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    stdout = proc.stdout

    def read_until() -> None:
        while b"Listening on" not in stdout.readline():
            pass

    took = _timed_call(read_until, gate)
    proc.kill()
    proc.wait()
    stdout.close()
    return took


def _any_once(jobs: Jobs, work: Path, n: int) -> float:
    gates = [work / f"any{n}-{i}" for i in range(MANY_JOBS)]
    for gate in gates:
        os.mkfifo(gate)
    ids = [jobs.run(command=f"read x < {gate}; exit 1", wait_seconds=0).job_id for gate in gates]
    took = _timed_call(lambda: jobs.wait(job_ids=ids, wait_seconds=30), gates[MANY_JOBS // 2])
    jobs.kill(job_ids=ids, signal="SIGKILL")
    return took


def _any_plain(work: Path, n: int) -> float:
    gates = [work / f"anyplain{n}-{i}" for i in range(MANY_JOBS)]
    for gate in gates:
        os.mkfifo(gate)
    procs = [subprocess.Popen(["sh", "-c", f"read x < {gate}; exit 1"]) for gate in gates]
    took = _timed_call(lambda: os.waitid(os.P_ALL, 0, os.WEXITED), gates[MANY_JOBS // 2])
    for proc in procs:
        proc.kill()
        proc.wait()
    return took


def measure() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jobs = Jobs(work / "jobs")
        until = [_until_once(jobs, work, n) for n in range(ROUNDS)]
        until_plain = [_until_plain(work, n) for n in range(ROUNDS)]
        many = [_any_once(jobs, work, n) for n in range(ROUNDS)]
        many_plain = [_any_plain(work, n) for n in range(ROUNDS)]
    return [
        Row(
            "wait until: line written to call returned (median)",
            _median_ms(until),
            _median_ms(until_plain),
            "readline on the command's stdout pipe",
            "<= 50 ms",
        ),
        Row(
            f"wait any of {MANY_JOBS}: first end to call returned (median)",
            _median_ms(many),
            _median_ms(many_plain),
            "os.waitid on the children",
        ),
    ]
