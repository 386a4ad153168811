"""``list_jobs`` on big stores (10,000 and 100,000 records), beside reading every record.

The records are written directly (``meta.json`` and ``state.json`` of ended jobs, dated in
the past), not launched: launching 100,000 jobs would take hours. The figures are for a store
at rest (nothing changed within the last second) except the rows with a job just added: one read
by a process watching the root (a server), one by a process that lists it (no watch).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from jobcore import Jobs, index
from jobcore.index import Filter, _watch
from jobcore.store import Store, new_job_id
from jobcore.supervisor import fsio, records

from .table import Row

ROUNDS = 20
#: Every record is dated this long ago, spread over a day.
AGE_S = 2 * 86400
TAGS = (["team.web", "ci"], ["team.db"], ["nightly"], [])
STATES = ("exited", "exited", "exited", "failed", "killed")


def write_records(root: Path, count: int, cwds: list[str]) -> None:
    """``count`` ended jobs in ``root``, with the records the engine writes, dated in the past."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    base = time.time() - AGE_S
    for n in range(count):
        job_id = new_job_id()
        created = base + n * (86400 / count)
        stamp = fsio.now_rfc3339(created)
        meta = records.meta_record(
            job_id,
            command=f"make test-{n}",
            cwd=cwds[n % len(cwds)],
            created_at=stamp,
            created_ns=int(created * 1e9),
            env_keys=[],
            env_vars=[],
            mask=[],
            inherit_env=True,
            env_files=[],
            timeout_ms=0,
            kill_after_ms=5000,
            tags=TAGS[n % len(TAGS)],
            shell_wrapper=None,
        )
        status = STATES[n % len(STATES)]
        state = records.state_record(
            job_id,
            status,
            started_at=stamp,
            exit_code=n % 3 if status == "exited" else None,
            duration_ms=1000,
            finished_at=fsio.now_rfc3339(created + 1),
        )
        job = root / job_id
        job.mkdir(mode=0o700)
        for name, record in ((fsio.META, meta), (fsio.STATE, state)):
            (job / name).write_text(fsio.dumps(record))


def _time(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _store(work: Path, count: int) -> tuple[Jobs, list[str]]:
    cwds = [str(work / "proj" / "a"), str(work / "proj" / "b"), str(work / "other")]
    for cwd in cwds:
        os.makedirs(cwd, exist_ok=True)
    root = work / f"jobs-{count}"
    write_records(root, count, cwds)
    return Jobs(root), cwds


def _rows(work: Path, count: int, baseline_rounds: int, aim: str) -> list[Row]:
    jobs, cwds = _store(work, count)
    label = f"{count:,}"
    every = Filter(scope=None, state=None, tags=[], after=None, limit=50)
    filtered = {"cwd": str(work / "proj"), "state": "exited", "tags": ["team.*"]}
    t0 = time.perf_counter()
    jobs.list(all=True)  # builds the index
    build = time.perf_counter() - t0
    # A store at rest: files changed within SETTLE_NS are not trusted yet and re-read each time.
    time.sleep(index.SETTLE_NS / 1e9)
    jobs.list(all=True)
    scan = _time(lambda: index.scan_page(Store(jobs.root), every), baseline_rounds)
    plain = "the same page by reading every record (no index)"
    rows = [
        Row(f"list_jobs limit 50, {label} records, first read (builds the index)", _ms(build), _ms(scan), plain),
        Row(
            f"list_jobs limit 50, {label} records (median)",
            _ms(_time(lambda: jobs.list(all=True), ROUNDS)),
            _ms(scan),
            plain,
            aim,
        ),
        Row(
            f"list_jobs limit 50, {label} records, cwd tree + state + tags a.* (median)",
            _ms(_time(lambda: jobs.list(**filtered), ROUNDS)),
            _ms(scan),
            plain,
            aim,
        ),
    ]
    page = jobs.list(all=True)
    rows.append(
        Row(
            f"list_jobs limit 50, {label} records, second page by cursor (median)",
            _ms(_time(lambda: jobs.list(all=True, cursor=page.next_cursor), ROUNDS)),
            _ms(scan),
            plain,
            aim,
        )
    )

    def after_a_new_job() -> float:
        write_records(Path(jobs.root), 1, cwds)
        t0 = time.perf_counter()
        jobs.list(all=True)
        return time.perf_counter() - t0

    def scandir() -> None:
        with os.scandir(jobs.root) as entries:
            for _ in entries:
                pass

    rows.append(
        Row(
            f"list_jobs limit 50, {label} records, a job added since the last read (median)",
            _ms(statistics.median(after_a_new_job() for _ in range(5))),
            _ms(_time(scandir, 5)),
            "os.scandir of the root alone",
            aim,
        )
    )
    # A process that cannot watch the root (another filesystem, a one-off CLI) lists it instead.
    _watch.WATCH_ROOTS = False
    try:
        listed = statistics.median(after_a_new_job() for _ in range(5))
    finally:
        _watch.WATCH_ROOTS = True
    rows.append(
        Row(
            f"list_jobs limit 50, {label} records, a job added, the root listed (no watch; median)",
            _ms(listed),
            _ms(_time(scandir, 5)),
            "os.scandir of the root alone",
        )
    )
    return rows


def measure() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="agent-jobs-bench-list-") as tmp:
        work = Path(tmp)
        return _rows(work, 10_000, 3, "<= 50 ms") + _rows(work, 100_000, 1, "<= 100 ms")
