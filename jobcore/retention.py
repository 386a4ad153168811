"""Automatic clean-up of old ended jobs, run after each launch.

Bounded so it never slows a launch by more than a few milliseconds: at most once a
minute per root, at most :data:`MAX_DELETIONS` jobs and :data:`BUDGET_S` of scanning a
turn, and only by the one process holding the root's clean-up lock (others skip it).
It never raises: a failed clean-up must not fail the launch that ran it.

It touches only entries named like a job id, and decides each deletion again by the one
deletion rule (:mod:`jobcore.deletion`), under the job's lock: a job restarted since it was
picked is left alone.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

from .deletion import delete_if_allowed, live_jobs
from .errors import JobError
from .store import FILE_MODE, JobDir, Store
from .supervisor import fsio, records
from .times import finished_epoch, parse_age

RETENTION_ENV = "AGENT_JOBS_RETENTION"
DEFAULT_RETENTION = "30d"
INTERVAL_S = 60.0
BUDGET_S = 0.005
MAX_DELETIONS = 20
_LOCK = ".retention.lock"
_STAMP = ".retention.stamp"

log = logging.getLogger(__name__)


def retention_seconds(value: str | None = None) -> float | None:
    """The configured age (None: clean-up off); raises ``JobError`` for a bad value."""
    setting = (value if value is not None else os.environ.get(RETENTION_ENV) or DEFAULT_RETENTION).strip()
    if setting.isascii() and setting.lower() == "off":
        return None
    return parse_age(setting, field=RETENTION_ENV)


def auto_clean(root: Path, *, force: bool = False, budget_s: float = BUDGET_S) -> list[str]:
    """Delete ended jobs older than the retention; returns the ids deleted this turn.

    ``budget_s`` bounds the scan (a test raises it to make a turn's outcome exact).
    """
    try:
        age = retention_seconds()
        if age is None or not root.is_dir():
            return []
        stamp = root / _STAMP
        if not force and stamp.exists() and time.time() - stamp.stat().st_mtime < INTERVAL_S:
            return []
        fd = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return []  # another process is cleaning this root right now
            stamp.touch(mode=FILE_MODE)
            cutoff = time.time() - age
            return delete_candidates(root, candidates(root, cutoff, time.monotonic() + budget_s), cutoff)
        finally:
            os.close(fd)
    except Exception:
        log.warning("automatic clean-up of %s failed", root, exc_info=True)
        return []


def _expired(state: dict, cutoff: float) -> bool:
    return records.is_ended(state) and finished_epoch(state) < cutoff


def candidates(root: Path, cutoff: float, deadline: float) -> list[str]:
    """Jobs (entries named like a job id, nothing else) that ended before ``cutoff``, as seen now."""
    found: list[str] = []
    for job_id in Store(root).job_ids():
        if time.monotonic() > deadline or len(found) >= MAX_DELETIONS:
            break
        try:
            if _expired(fsio.read_json(str(root / job_id / fsio.STATE)), cutoff):
                found.append(job_id)
        except (OSError, ValueError, KeyError):
            continue
    return found


def delete_candidates(root: Path, job_ids: list[str], cutoff: float) -> list[str]:
    """Delete each job that the deletion rule, under its lock, still lets go."""
    if not job_ids:
        return []
    live = live_jobs()
    deleted = []
    for job_id in job_ids:
        try:
            # Not blocking: a job being started or restarted right now is skipped.
            outcome = delete_if_allowed(JobDir(root, job_id), finished_before=cutoff, live=live, blocking=False)
        except (BlockingIOError, JobError, OSError, ValueError, KeyError):
            continue
        if outcome.action == "deleted":
            deleted.append(job_id)
    return deleted
