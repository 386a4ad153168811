"""Slurm's record of a job (``scontrol -o show job``): its state, pending reason and exit code.

Asked at read time, at most once per :data:`QUERY_PERIOD_S` per job in this process: a
wait polls the job's files far more often than Slurm needs asking. An ended record is final
and kept. Without accounting, Slurm forgets a finished job after ``MinJobAge`` (300 s by
default): a job it no longer knows is ``None``.
"""

from __future__ import annotations

import re
import threading
import time

from . import commands

#: Slurm is asked about one job at most this often; between, its last answer stands.
QUERY_PERIOD_S = 1.0
#: States in which the batch script may still run, or will: the job is not over for Slurm.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
    }
)
#: Compiled on first use (by ``re``'s cache), not at import: the CLI's cold start never parses a record.
_FIELD = r"(?:^|\s)(JobState|Reason|ExitCode|NodeList)=(\S*)"
_UNKNOWN = "Invalid job id"


class SlurmJob:
    """What Slurm says of one job. A plain class: a dataclass costs the CLI's cold start."""

    __slots__ = ("exit_code", "job_id", "node", "reason", "state")

    def __init__(self, job_id: str, state: str, reason: str | None, exit_code: str | None, node: str | None) -> None:
        self.job_id = job_id
        self.state = state
        self.reason = reason
        #: ``status:signal`` of the batch script, as Slurm shows it (``0:0`` while it runs).
        self.exit_code = exit_code
        self.node = node

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def parse(job_id: str, line: str) -> SlurmJob:
    fields = dict(re.findall(_FIELD, line))
    reason = fields.get("Reason")
    node = fields.get("NodeList")
    return SlurmJob(
        job_id=job_id,
        state=fields.get("JobState", "UNKNOWN"),
        reason=None if reason in (None, "None", "(null)") else reason,
        exit_code=fields.get("ExitCode"),
        node=None if node in (None, "", "(null)") else node,
    )


def query(job_id: str) -> SlurmJob | None:
    """Slurm's record now; None when Slurm does not know the job (or no longer)."""
    done = commands.run(["scontrol", "-o", "show", "job", job_id])
    if done.returncode != 0:
        if _UNKNOWN in done.stderr:
            return None
        raise commands.unavailable(f"scontrol show job {job_id}: {commands.first_line(done.stderr)}")
    return parse(job_id, done.stdout)


_cache: dict[str, tuple[float, SlurmJob | None]] = {}
_cache_lock = threading.Lock()


def cached(job_id: str) -> SlurmJob | None:
    """:func:`query`, answered from the last answer when it is recent enough or final."""
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(job_id)
    if hit is not None and (now - hit[0] < QUERY_PERIOD_S or (hit[1] is not None and not hit[1].active)):
        return hit[1]
    found = query(job_id)
    with _cache_lock:
        _cache[job_id] = (time.monotonic(), found)
    return found


def forget(job_id: str) -> None:
    """Drop the cached answer: the job was just signalled or cancelled, ask Slurm afresh."""
    with _cache_lock:
        _cache.pop(job_id, None)
