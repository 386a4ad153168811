"""kill: signal what still lives of a job and observe its end, ending it for a stuck supervisor."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from ..errors import JobError
from ..inputs import KillInput
from ..payloads import KillPayload
from ..store import JobDir
from ..supervisor import fsio, procs, records
from ..times import epoch
from ..waiting import Flow
from ._context import Context
from ._observe import SUPERVISOR_GRACE_S, kill_supervisor, ms, stop_job, wait_for_end

#: How long kill observes the end when no ``wait_seconds`` is given.
DEFAULT_KILL_WAIT_S = 3.0


def kill(ctx: Context, inp: KillInput) -> Flow[KillPayload]:
    jd = ctx.store.open(inp.job_id)
    state = jd.observed_state()
    if records.status(state) == "created":
        raise JobError(
            "invalid_state", f"job {jd.job_id} has not started; nothing to kill", details={"job_id": jd.job_id}
        )
    already_ended = records.is_ended(state)
    wait_s = DEFAULT_KILL_WAIT_S if inp.wait_seconds is None else inp.wait_seconds
    begun = time.monotonic()
    pgid = state.get("pid")
    pids = procs.job_processes(jd.job_id, pgid)
    supervisor = _live_supervisor(jd, state)
    deadline = begun
    sent = None
    if pids:
        signum = getattr(signal, inp.signal)
        # Written before any signal, so the supervisor records the end as killed.
        fsio.write_json_atomic(jd.file(fsio.KILL_REQUEST), {"signal": inp.signal, "requested_at": fsio.now_rfc3339()})
        ending = signum not in (signal.SIGUSR1, signal.SIGUSR2)
        deadline = begun + wait_s if ending else begun
        kill_after = jd.read_meta()["kill_after_ms"] / 1000
        if supervisor is not None:
            os.kill(supervisor, signal.SIGUSR1)  # it escalates to SIGKILL after kill_after
            # Should it not have, a grace later: we do (it is judged by the end, below).
            escalate_after = kill_after + SUPERVISOR_GRACE_S if ending else None
        else:
            escalate_after = kill_after if ending else None
        yield from stop_job(jd.job_id, pgid, signum, escalate_after, deadline)
        sent = inp.signal
    if (
        supervisor is not None
        and procs.is_supervisor_of(supervisor, str(jd.path))
        and not procs.job_processes(jd.job_id, pgid)
    ):
        # The job is gone: its supervisor records the end at once, unless it is stuck.
        state = yield from wait_for_end(jd, time.monotonic() + SUPERVISOR_GRACE_S)
        if not records.is_ended(state):
            state = yield from _end_unresponsive(jd, supervisor)
    else:
        state = yield from wait_for_end(jd, deadline)
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
    )


def _live_supervisor(jd: JobDir, state: dict[str, Any]) -> int | None:
    supervisor = state.get("supervisor_pid")
    return supervisor if supervisor is not None and procs.is_supervisor_of(supervisor, str(jd.path)) else None


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
