"""Supervisors' memory with the kernel's same-page merging (KSM), beside the same jobs without it.

``N`` ``sleep 600`` jobs are launched through the engine (fork server on) twice: as by default,
and with ``AGENT_JOBS_KSM=1`` while KSM runs. The figure is the PSS of their supervisors and
of the fork server, per job, once ``ksmd`` has scanned every page three times (merging takes
two). It needs root and a kernel with KSM (6.4 or later for ``PR_SET_MEMORY_MERGE``); the
machine's KSM settings are put back afterwards. Elsewhere the row says why it was not measured.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from jobcore import Jobs
from jobcore.supervisor import forkserver

from . import procfs
from .table import Row

JOBS = 200
KSM = Path("/sys/kernel/mm/ksm")
#: Pages ksmd looks at per wake-up (every 20 ms by default) while we measure: all of ours
#: are scanned in about a second, not a minute.
PAGES_TO_SCAN = 20000
#: Longest wait for the scans.
SCAN_TIMEOUT_S = 120.0
METRIC = f"memory beside {JOBS} jobs, KSM on (AGENT_JOBS_KSM=1): supervisors + fork server, PSS per job"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (to turn KSM on)"
    if not (KSM / "run").exists() or not Path("/proc/self/ksm_stat").exists():
        return "no KSM in this kernel"
    return None


def _pss_per_job(jobs: Jobs, ids: list[str]) -> float:
    supervisors = [jobs.store.open(job_id).read_state()["supervisor_pid"] for job_id in ids]
    fork_servers = {procfs.parent(pid) for pid in supervisors}
    return sum(procfs.memory_kib(pid, "Pss") for pid in [*supervisors, *fork_servers]) / len(ids) / 1024


def _scans_done(times: int) -> None:
    """Wait until ksmd has scanned every mergeable page ``times`` more times."""
    start = int((KSM / "full_scans").read_text())
    deadline = time.monotonic() + SCAN_TIMEOUT_S
    while int((KSM / "full_scans").read_text()) < start + times and time.monotonic() < deadline:
        time.sleep(0.2)  # ksmd tells no one: its counter is all there is to look at


def _measure_once(root: Path, merge: bool) -> float:
    os.environ.pop(forkserver.MERGE_PAGES_VAR, None)
    if merge:
        os.environ[forkserver.MERGE_PAGES_VAR] = "1"
    jobs = Jobs(root)
    ids = [jobs.run(command="sleep 600", wait_seconds=0).job_id for _ in range(JOBS)]
    try:
        if merge:
            _scans_done(3)
        return _pss_per_job(jobs, ids)
    finally:
        for at in range(0, len(ids), 100):
            jobs.kill(job_ids=ids[at : at + 100], wait_seconds=30)


def measure() -> list[Row]:
    if (why := _why_not()) is not None:
        return [Row(METRIC, f"not measured: {why}", "-", "-")]
    saved = {name: (KSM / name).read_text().strip() for name in ("run", "pages_to_scan")}
    saved_var = os.environ.get(forkserver.MERGE_PAGES_VAR)
    work = Path(tempfile.mkdtemp(prefix="agent-jobs-bench-"))
    try:
        (KSM / "pages_to_scan").write_text(str(PAGES_TO_SCAN))
        (KSM / "run").write_text("1")
        plain = _measure_once(work / "plain", merge=False)
        merged = _measure_once(work / "merged", merge=True)
    finally:
        if saved["run"] != "1":
            (KSM / "run").write_text("2")  # unmerge what we merged
        (KSM / "run").write_text(saved["run"])
        (KSM / "pages_to_scan").write_text(saved["pages_to_scan"])
        os.environ.pop(forkserver.MERGE_PAGES_VAR, None)
        if saved_var is not None:
            os.environ[forkserver.MERGE_PAGES_VAR] = saved_var
        shutil.rmtree(work, ignore_errors=True)
    return [
        Row(
            METRIC,
            f"{merged:.2f} MiB",
            f"{plain:.2f} MiB",
            f"the same {JOBS} jobs, AGENT_JOBS_KSM unset (KSM on)",
            "with the server's share, <= 1 MiB",
        )
    ]
