"""kill: have the supervisor signal a job and observe its end; do it ourselves for a lost or stuck one.

A live supervisor is asked (``kill.json``, then SIGUSR1): it signals the job's group, then
the job's processes that left it, escalates, and records the end, which wakes us through
the wake FIFO. Nothing scans /proc on that path, so many kills at once cost little each.
/proc is scanned only when no supervisor is there to ask or it does not answer.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from ..errors import JobError
from ..inputs import KillInput
from ..payloads import KillPayload
from ..slurm import cancel, jobfile
from ..store import JobDir
from ..supervisor import fsio, procs, records
from ..times import epoch
from ..waiting import Flow
from ._context import Context
from ._many import job_end, many_jobs
from ._observe import SUPERVISOR_GRACE_S, backend_fields, kill_supervisor, ms, stop_job, wait_for_end, wait_for_ends

#: How long kill observes the end when no ``wait_seconds`` is given.
DEFAULT_KILL_WAIT_S = 3.0
#: Signals that do not end a job: kill sends them and returns without waiting for an end.
_NOT_ENDING = frozenset({signal.SIGUSR1, signal.SIGUSR2})


def kill(ctx: Context, inp: KillInput) -> Flow[KillPayload]:
    if inp.job_id is None:
        return (yield from _kill_many(ctx, inp))
    jd = ctx.store.open(inp.job_id)
    state = jd.observed_state()
    if records.status(state) == "created":
        raise JobError(
            "invalid_state", f"job {jd.job_id} has not started; nothing to kill", details={"job_id": jd.job_id}
        )
    already_ended = records.is_ended(state)
    wait_s = DEFAULT_KILL_WAIT_S if inp.wait_seconds is None else inp.wait_seconds
    begun = time.monotonic()
    signum = getattr(signal, inp.signal)
    deadline = begun if signum in _NOT_ENDING else begun + wait_s
    slurm = jobfile.is_slurm(jd.path)
    supervisor = None if slurm else live_supervisor(jd, state)
    sent: str | None
    if slurm:
        sent, state = yield from cancel.kill(jd, state, inp.signal, deadline)
    elif supervisor is not None and not already_ended and signum not in _NOT_ENDING:
        state = yield from end_job(jd, supervisor, inp.signal, deadline)
        sent = inp.signal
    else:
        sent, state = yield from _kill_directly(jd, state, supervisor, inp.signal, deadline)
    end = records.end_fields(state) if records.is_ended(state) else {}
    return KillPayload(
        job_id=jd.job_id,
        signal=sent,
        state=records.status(state),
        already_ended=already_ended or None,
        exit_code=records.exit_code(state),
        end_signal=end.get("signal"),
        finished_at=end.get("finished_at"),
        reason=end.get("reason"),
        observed_within_ms=ms(time.monotonic() - begun),
        **backend_fields(jd, state),
    )


def _kill_many(ctx: Context, inp: KillInput) -> Flow[KillPayload]:
    """Every live job named is signalled at once (each supervisor asked before any answer is
    awaited), then all are watched together; the rare ones that need more are seen to in turn."""
    jds = many_jobs(ctx, inp)
    begun = time.monotonic()
    signum = getattr(signal, inp.signal)
    wait_s = DEFAULT_KILL_WAIT_S if inp.wait_seconds is None else inp.wait_seconds
    deadline = begun if signum in _NOT_ENDING else begun + wait_s
    states = {jd.job_id: jd.observed_state() for jd in jds}
    asked: dict[str, tuple[int, str]] = {}
    for jd in jds:
        state = states[jd.job_id]
        if records.status(state) == "created" or records.is_ended(state) or signum in _NOT_ENDING:
            continue
        if jobfile.is_slurm(jd.path):
            continue  # seen to in turn below
        if (supervisor := live_supervisor(jd, state)) is not None:
            asked[jd.job_id] = (supervisor, ask_supervisor(jd, supervisor, inp.signal))
    if asked:
        watched = [jd for jd in jds if jd.job_id in asked]
        seen, _ = yield from wait_for_ends(
            watched, [None] * len(watched), None, "all", min(deadline, begun + SUPERVISOR_GRACE_S)
        )
        states.update(seen)
    for jd in jds:
        state = states[jd.job_id]
        if jd.job_id in asked:
            supervisor, requested_at = asked[jd.job_id]
            states[jd.job_id] = yield from follow_kill(jd, state, supervisor, inp.signal, requested_at, begun, deadline)
        elif jobfile.is_slurm(jd.path) and records.status(state) != "created":
            _, states[jd.job_id] = yield from cancel.kill(jd, state, inp.signal, deadline)
        elif records.status(state) != "created":
            _, states[jd.job_id] = yield from _kill_directly(
                jd, state, live_supervisor(jd, state), inp.signal, deadline
            )
    return KillPayload(
        signal=inp.signal,
        observed_within_ms=ms(time.monotonic() - begun),
        jobs=[job_end(jd.job_id, states[jd.job_id]) for jd in jds],
    )


def _kill_directly(
    jd: JobDir, state: dict[str, Any], supervisor: int | None, signal_name: str, deadline: float
) -> Flow[tuple[str | None, dict[str, Any]]]:
    """Signal the job's processes ourselves: the signal sent (None: no process was left) and the state.

    Signals that end nothing go straight to the job, in the order they are asked for
    (a request file holds only the last); an ended job may have left processes behind.
    """
    signum = getattr(signal, signal_name)
    found = procs.job_processes(jd.job_id, state.get("pid"))
    sent = signal_name if found else None
    if sent is not None and signum not in _NOT_ENDING:
        request_kill(jd, signal_name)
    state = yield from _end_directly(jd, state, supervisor, signum, deadline, found=found)
    return sent, state


def live_supervisor(jd: JobDir, state: dict[str, Any]) -> int | None:
    supervisor = state.get("supervisor_pid")
    return supervisor if supervisor is not None and procs.is_supervisor_of(supervisor, str(jd.path)) else None


def request_kill(jd: JobDir, signal_name: str) -> str:
    """Write ``kill.json`` (before any signal, so the end is recorded as killed); returns its time."""
    requested_at = fsio.now_rfc3339()
    fsio.write_json_atomic(jd.file(fsio.KILL_REQUEST), {"signal": signal_name, "requested_at": requested_at})
    return requested_at


def _acknowledged(jd: JobDir, requested_at: str) -> bool:
    """The supervisor has signalled the job for our request (or a later one)."""
    try:
        sent = fsio.read_json(jd.file(fsio.KILL_SENT))
    except (OSError, ValueError):
        return False
    return isinstance(sent, dict) and str(sent.get("requested_at") or "") >= requested_at


def end_job(jd: JobDir, supervisor: int, signal_name: str, deadline: float) -> Flow[dict[str, Any]]:
    """Ask the live ``supervisor`` to signal the job (a signal that ends it) and watch for
    its end until ``deadline``.

    A supervisor that has not acknowledged the request within a grace may be stuck: we signal
    and escalate ourselves, and record the end for it should it not within a further grace. One that has is trusted to
    escalate after ``kill_after``; should no end come a grace after that, we SIGKILL ourselves.
    """
    begun = time.monotonic()
    requested_at = ask_supervisor(jd, supervisor, signal_name)
    state = yield from wait_for_end(jd, min(deadline, begun + SUPERVISOR_GRACE_S))
    return (yield from follow_kill(jd, state, supervisor, signal_name, requested_at, begun, deadline))


def ask_supervisor(jd: JobDir, supervisor: int, signal_name: str) -> str:
    """Write ``kill.json`` and wake the supervisor with SIGUSR1; returns the request's time."""
    requested_at = request_kill(jd, signal_name)
    try:
        os.kill(supervisor, signal.SIGUSR1)
    except ProcessLookupError:
        pass  # gone since: the end is recorded as a lost supervisor's, or later by us
    return requested_at


def follow_kill(
    jd: JobDir,
    state: dict[str, Any],
    supervisor: int,
    signal_name: str,
    requested_at: str,
    begun: float,
    deadline: float,
) -> Flow[dict[str, Any]]:
    """After a grace since the request at ``begun``: trust, escalate or end it ourselves (see end_job)."""
    if records.is_ended(state) or time.monotonic() >= deadline:
        return state
    signum = getattr(signal, signal_name)
    kill_after = jd.read_meta()["kill_after_ms"] / 1000
    if not _acknowledged(jd, requested_at):
        return (yield from _end_directly(jd, state, supervisor, signum, deadline, kill_after))
    state = yield from wait_for_end(jd, min(deadline, begun + kill_after + SUPERVISOR_GRACE_S))
    if records.is_ended(state) or time.monotonic() >= deadline:
        return state
    return (yield from _end_directly(jd, state, supervisor, signal.SIGKILL, deadline, 0))


def _end_directly(
    jd: JobDir,
    state: dict[str, Any],
    supervisor: int | None,
    signum: int,
    deadline: float,
    escalate_after: float | None = None,
    *,
    found: list[int] | None = None,
) -> Flow[dict[str, Any]]:
    """Signal the job's processes found through /proc and watch them go; a supervisor still
    there once they are gone records the end, or, silent a grace, is ended.

    ``found``: the job's processes as the caller has just found them, so /proc is not read
    through once more (every process's environment, costly beside thousands of processes).
    """
    pgid = state.get("pid")
    if found is None:
        found = procs.job_processes(jd.job_id, pgid)
    if found:
        if escalate_after is None and signum not in _NOT_ENDING:
            escalate_after = jd.read_meta()["kill_after_ms"] / 1000
            if supervisor is not None:
                escalate_after += SUPERVISOR_GRACE_S  # the supervisor escalates first
        yield from stop_job(jd.job_id, pgid, signum, escalate_after, deadline)
    if (
        supervisor is not None
        and procs.is_supervisor_of(supervisor, str(jd.path))
        and not procs.job_processes(jd.job_id, pgid)
    ):
        # The job is gone: its supervisor records the end at once, unless it is stuck
        # (merely slow under load, it still has a grace before it is taken for stuck).
        state = yield from wait_for_end(jd, time.monotonic() + SUPERVISOR_GRACE_S)
        if not records.is_ended(state):
            state = yield from _end_unresponsive(jd, supervisor)
        return state
    return (yield from wait_for_end(jd, deadline))


def _end_unresponsive(jd: JobDir, supervisor: int) -> Flow[dict[str, Any]]:
    """SIGKILL a supervisor that has not recorded its job's end, and record the end for it.

    Under the job's lock, so no reader records the supervisor as lost meanwhile. The root
    process's exit status is read from its zombie (the stuck supervisor, its parent, never
    reaped it) before the supervisor goes and the zombie with it.
    """
    with jd.lock():
        state = jd.read_state()
        if records.is_ended(state):
            return state
        pgid = state.get("pid")
        status = procs.exit_status(pgid) if pgid is not None else None
        yield from kill_supervisor(jd, supervisor)
        state = jd.read_state()
        if records.is_ended(state) or procs.job_processes(jd.job_id, pgid):
            return state  # a process came back to life: recorded as a lost supervisor's job
        started_at = records.started_at(state)
        fields: dict[str, Any] = {
            "started_at": started_at,
            "pid": pgid,
            "supervisor_pid": supervisor,
            "finished_at": fsio.now_rfc3339(),
            "duration_ms": ms(time.time() - epoch(started_at)) if started_at else None,
            "reason": "killed",
            "supervisor": "unresponsive",
        }
        if status is not None and os.WIFEXITED(status):
            return jd.write_state("exited", exit_code=os.WEXITSTATUS(status), **fields)
        signal_name = procs.signal_name(os.WTERMSIG(status)) if status is not None else None
        return jd.write_state("killed", signal_name=signal_name, **fields)
