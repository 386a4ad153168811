"""Automatic clean-up of old ended jobs, run after each launch (issue 4).

Bounded so it never slows a launch by more than a few milliseconds: at most once a
minute per root, at most :data:`MAX_DELETIONS` jobs and :data:`BUDGET_S` of scanning a
turn, and only by the one process holding the root's clean-up lock (others skip it).
It never raises: a failed clean-up must not fail the launch that ran it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from pathlib import Path

from . import _fsio, _procs
from .errors import JobError
from .store import JobDir
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
    if setting.lower() == "off":
        return None
    return parse_age(setting, field=RETENTION_ENV)


def auto_clean(root: Path, *, force: bool = False) -> list[str]:
    """Delete ended jobs older than the retention; returns the ids deleted this turn."""
    try:
        age = retention_seconds()
        if age is None or not root.is_dir():
            return []
        stamp = root / _STAMP
        if not force and stamp.exists() and time.time() - stamp.stat().st_mtime < INTERVAL_S:
            return []
        fd = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return []  # another process is cleaning this root right now
            stamp.touch()
            return _clean(root, time.time() - age)
        finally:
            os.close(fd)
    except Exception:
        log.warning("automatic clean-up of %s failed", root, exc_info=True)
        return []


def _clean(root: Path, cutoff: float) -> list[str]:
    deadline = time.monotonic() + BUDGET_S
    candidates: list[tuple[str, int | None]] = []
    for name in os.listdir(root):
        if time.monotonic() > deadline or len(candidates) >= MAX_DELETIONS:
            break
        try:
            state = _fsio.read_json(str(root / name / _fsio.STATE))
        except (OSError, ValueError):
            continue
        if state["job"]["status"] in _fsio.TERMINAL_STATES and finished_epoch(state) < cutoff:
            candidates.append((name, state.get("pid")))
    if not candidates:
        return []
    alive_markers, alive_groups = _procs.live_jobs()
    deleted = []
    for job_id, pgid in candidates:
        if job_id in alive_markers or (pgid is not None and pgid in alive_groups):
            continue
        try:
            with JobDir(root, job_id).lock(blocking=False):  # a job being restarted is skipped
                shutil.rmtree(root / job_id, ignore_errors=True)
        except (BlockingIOError, JobError):
            continue
        if not (root / job_id).exists():
            deleted.append(job_id)
    return deleted
