"""Ending a Slurm job: ``scancel`` for one still queued, our supervisor asked for one running.

A queued job is cancelled once its supervisor is kept from ever running it (the same
``supervisor.ack`` marker a local launch uses, taken first) and recorded ``killed``. A
running one is asked as locally (``kill.json``), the supervisor woken by
``scancel --batch --signal=USR1``: it signals the job, escalates after ``kill_after`` and
records the end. Should it not acknowledge within a grace, or the job outlive the escalation,
``scancel --full --signal=KILL`` ends everything and the end is judged from Slurm's record.
Waits poll the files every :data:`jobcore.slurm.POLL_S`.
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, Any

from ..supervisor import fsio, records
from ..waiting import Flow, WaitFor
from . import POLL_S, commands, jobfile, liveness, record

if TYPE_CHECKING:
    from ..store import JobDir

#: How long a supervisor may take to acknowledge a kill request before Slurm ends the job.
GRACE_S = 2.0
#: Signals that do not end a job: sent and not waited for.
_NOT_ENDING = frozenset({"SIGUSR1", "SIGUSR2"})


def poll_end(jd: JobDir, deadline: float) -> Flow[dict[str, Any]]:
    """The job's observed state once it has ended or at the deadline, looked at every POLL_S."""
    while True:
        state = jd.observed_state()
        remaining = deadline - time.monotonic()
        if records.is_ended(state) or remaining <= 0:
            return state
        yield WaitFor([], min(remaining, POLL_S))


def scancel(slurm_id: str, *flags: str) -> None:
    commands.run(["scancel", *flags, slurm_id])
    record.forget(slurm_id)


def kill(jd: JobDir, state: dict[str, Any], signal_name: str, deadline: float) -> Flow[tuple[str | None, dict]]:
    """Signal the job (the signal sent, None when nothing was left to signal) and watch for its end."""
    slurm_id = jobfile.job_id(jd.path)
    if records.is_ended(state):
        if slurm_id is not None and liveness.may_be_alive(jd):
            scancel(slurm_id)  # left over on the node after the end was recorded
            return signal_name, state
        return None, state
    if signal_name not in _NOT_ENDING and _keep_from_starting(jd):
        if slurm_id is not None:
            scancel(slurm_id)
        with jd.lock():
            state = jd.read_state()
            if not records.is_ended(state):
                state = jd.write_state("killed", finished_at=fsio.now_rfc3339(), reason="killed")
        return signal_name, state
    return signal_name, (yield from _ask_supervisor(jd, slurm_id, signal_name, deadline))


def _keep_from_starting(jd: JobDir) -> bool:
    """Take the supervisor's marker first: True when no supervisor has started, nor ever will."""
    try:
        os.close(os.open(jd.file(fsio.ACK), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def _ask_supervisor(jd: JobDir, slurm_id: str | None, signal_name: str, deadline: float) -> Flow[dict[str, Any]]:
    begun = time.monotonic()
    requested_at = fsio.now_rfc3339()
    fsio.write_json_atomic(jd.file(fsio.KILL_REQUEST), {"signal": signal_name, "requested_at": requested_at})
    if slurm_id is None:
        return jd.observed_state()
    scancel(slurm_id, "--batch", "--signal=USR1")
    if signal_name in _NOT_ENDING:
        return jd.observed_state()
    state = yield from poll_end(jd, min(deadline, begun + GRACE_S))
    if records.is_ended(state) or time.monotonic() >= deadline:
        return state
    if _acknowledged(jd, requested_at):
        kill_after = jd.read_meta()["kill_after_ms"] / 1000
        state = yield from poll_end(jd, min(deadline, begun + kill_after + GRACE_S))
        if records.is_ended(state) or time.monotonic() >= deadline:
            return state
    scancel(slurm_id, "--full", f"--signal={signal.SIGKILL.name.removeprefix('SIG')}")
    return (yield from poll_end(jd, deadline))


def _acknowledged(jd: JobDir, requested_at: str) -> bool:
    try:
        sent = fsio.read_json(jd.file(fsio.KILL_SENT))
    except (OSError, ValueError):
        return False
    return str(sent.get("requested_at") or "") >= requested_at


def stop(jd: JobDir, state: dict[str, Any], deadline: float) -> Flow[bool]:
    """End the job and wait until Slurm has let go of it (a restart reuses the directory);
    whether it did by the deadline."""
    _, state = yield from kill(jd, state, "SIGTERM", deadline)
    while liveness.may_be_alive(jd):
        if time.monotonic() >= deadline:
            return False
        yield WaitFor([], POLL_S)
    return True
