"""Judging a Slurm job from Slurm's record, never from this host's ``/proc``.

Its supervisor runs on a node: while the files say ``queued`` or ``running``, Slurm's record
says whether it can still be there. A job Slurm has ended (or forgotten) whose files never
got an end is recorded under the job's lock, once re-read: ``killed`` if a kill was asked
for, else ``failed`` with a reason naming Slurm's state and reason (and, for a supervisor
that never started, the tail of ``slurm.out``). Slurm not answering judges nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import JobError
from ..supervisor import fsio, records
from . import jobfile, record

if TYPE_CHECKING:
    from ..store import JobDir

#: States in which a Slurm job's files may still change.
OPEN_STATES = frozenset({"queued", "running"})


def observed(jd: JobDir, state: dict[str, Any]) -> dict[str, Any]:
    """``state``, or the end recorded for a job Slurm no longer runs."""
    if records.status(state) not in OPEN_STATES:
        return state
    slurm_id = jobfile.job_id(jd.path)
    if slurm_id is None:
        return state  # sbatch has not answered yet
    try:
        found = record.cached(slurm_id)
    except JobError:
        return state
    if found is not None and found.active:
        return state
    with jd.lock():
        state = jd.read_state()
        if records.status(state) not in OPEN_STATES:
            return state
        return record_lost(jd, state, slurm_id, found)


def record_lost(jd: JobDir, state: dict[str, Any], slurm_id: str, found: record.SlurmJob | None) -> dict[str, Any]:
    """Write the end of a job whose supervisor is gone without writing it (the caller holds the lock)."""
    common: dict[str, Any] = {
        "started_at": records.started_at(state),
        "pid": state.get("pid"),
        "supervisor_pid": state.get("supervisor_pid"),
        "finished_at": fsio.now_rfc3339(),
    }
    if _kill_requested(jd):
        return jd.write_state("killed", reason="killed", **common)
    return jd.write_state("failed", reason=lost_reason(jd, state, slurm_id, found), **common)


def _kill_requested(jd: JobDir) -> bool:
    """A kill that ends the job was asked for (SIGUSR1 and SIGUSR2 end nothing)."""
    try:
        request = fsio.read_json(jd.file(fsio.KILL_REQUEST))
    except (OSError, ValueError):
        return False
    return request.get("signal") not in (None, "SIGUSR1", "SIGUSR2")


def lost_reason(jd: JobDir, state: dict[str, Any], slurm_id: str, found: record.SlurmJob | None) -> str:
    if found is None:
        said = f"Slurm job {slurm_id} is unknown to Slurm"
    else:
        said = f"Slurm job {slurm_id} is {found.state}"
        if found.reason:
            said += f" (reason {found.reason})"
        if found.exit_code and found.exit_code != "0:0":
            said += f", exit code {found.exit_code}"
    if records.status(state) == "queued":
        said = f"the supervisor never started on the node: {said}"
        if tail := jobfile.out_tail(jd.path):
            said += f"; slurm.out: {tail}"
    return f"slurm_lost: {said}"


def may_be_alive(jd: JobDir) -> bool:
    """Whether anything of the job may still run on a node, asking Slurm afresh: for deletion.

    Not knowing counts as alive: a job mid-submission, or Slurm not answering.
    """
    slurm_id = jobfile.job_id(jd.path)
    if slurm_id is None:
        return records.status(jd.read_state()) in OPEN_STATES
    try:
        found = record.query(slurm_id)
    except JobError:
        return True
    return found is not None and found.active


def info(jd: JobDir, state: dict[str, Any]) -> dict[str, Any] | None:
    """The payloads' ``slurm`` object (None for a local job): Slurm's id, state and pending
    reason, from the rate-limited record; for a job that has ended, a record that said it
    still runs is not shown as it was: Slurm is asked again."""
    if not jobfile.is_slurm(jd.path):
        return None
    slurm_id = jobfile.job_id(jd.path)
    out: dict[str, Any] = {"job_id": slurm_id}
    if slurm_id is not None:
        try:
            found = record.cached(slurm_id)
            if found is not None and found.active and records.is_ended(state):
                record.forget(slurm_id)
                found = record.cached(slurm_id)
        except JobError:
            found = None
        if found is not None:
            out.update(state=found.state, reason=found.reason)
    return out
