"""The one rule for deleting a job, used by the delete verb and by the automatic clean-up.

A job may go when it is ended (or still ``created``), old enough when an age is asked for,
and has no live process (a Slurm job: none Slurm still runs). The rule is decided under the
job's lock, on its state as it is then, so no start or restart runs meanwhile. Liveness is one pass over /proc
(:func:`live_jobs`): a caller deciding for many jobs takes it once and passes it to each.
"""

from __future__ import annotations

from collections.abc import Set

from . import index
from .payloads import DeleteEntry
from .slurm import jobfile, liveness
from .store import JobDir
from .supervisor import procs, records
from .times import finished_epoch

live_jobs = procs.live_jobs


def delete_if_allowed(
    jd: JobDir,
    *,
    finished_before: float | None = None,
    dry_run: bool = False,
    live: Set[str] | None = None,
    blocking: bool = True,
) -> DeleteEntry:
    """Decide under the job's lock whether it may go and, unless ``dry_run``, delete it.

    ``finished_before`` (an epoch) asks for ended jobs that finished before it only;
    ``live`` is :func:`live_jobs` taken by the caller (None: looked at now, under the lock).
    Raises ``JobError`` for a job that is gone, ``BlockingIOError`` for a busy one when not ``blocking``.
    """
    with jd.lock(blocking=blocking):
        slurm = jobfile.is_slurm(jd.path)
        state = jd.observed_state() if slurm else jd.read_state()
        status = records.status(state)

        def entry(action: str, reason: str) -> DeleteEntry:
            return DeleteEntry(job_id=jd.job_id, state=status, action=action, reason=reason)  # type: ignore[arg-type]

        if status in ("running", "queued"):
            return entry("skipped", status)
        if finished_before is not None:
            if status == "created":
                return entry("skipped", "not_ended")
            if finished_epoch(state) > finished_before:
                return entry("skipped", "too_recent")
        if status != "created" and (
            liveness.may_be_alive(jd) if slurm else jd.job_id in (live_jobs() if live is None else live)
        ):
            return entry("skipped", "alive")
        kind = "ended" if status != "created" else "created"
        if dry_run:
            return entry("would_delete", kind)
        if not jd.remove():
            return entry("skipped", "delete_failed")
        index.forget(jd.root, jd.job_id)
        return entry("deleted", kind)
