"""restart: stop what still lives of a job, clear its logs and run its definition again."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from .. import index
from ..errors import JobError
from ..inputs import WatchInput
from ..payloads import LaunchPayload
from ..retention import auto_clean
from ..slurm import cancel, jobfile
from ..store import JobDir
from ..supervisor import fsio, procs, records
from ..waiting import Flow
from ._context import Context
from ._launching import check_definition, launch_job, launch_slot
from ._observe import (
    SUPERVISOR_GRACE_S,
    capped_max_bytes,
    kill_supervisor,
    stop_job,
    wait_any_exit,
    wait_for_end,
    watch_launched,
)
from .kill import end_job, live_supervisor

_RESTART_STOP_S = 10.0


def restart(ctx: Context, inp: WatchInput) -> Flow[LaunchPayload]:
    started = time.monotonic()
    max_bytes, lowered = capped_max_bytes(inp.max_bytes)
    jd = ctx.store.open(inp.job_id)
    with jd.lock():
        check_definition(ctx.policy, jd.read_meta())
        state = jd.observed_state()
        # The slot is held from before the old run is stopped: a refused restart changes nothing.
        with launch_slot(ctx, jd):
            if records.status(state) != "created":
                if jobfile.is_slurm(jd.path):
                    yield from _stop_slurm(jd, state)
                else:
                    yield from _stop_all(jd, state)
                jd.empty_logs()
                for name in fsio.RUN_FILES:
                    try:
                        os.unlink(jd.file(name))
                    except FileNotFoundError:
                        pass
                jd.write_state("created")
                index.refresh(jd.root, [jd.job_id])  # an ended row is otherwise re-checked only in turn
            yield from launch_job(ctx, jd)
    auto_clean(ctx.store.root)
    return (yield from watch_launched("restart", jd, inp, started, max_bytes, lowered, ctx.budget_bytes))


def _stop_slurm(jd: JobDir, state: dict[str, Any]) -> Flow[None]:
    """End a Slurm job and wait until Slurm has let go of it, or refuse the restart."""
    slurm_id = jobfile.job_id(jd.path)
    if not (yield from cancel.stop(jd, state, time.monotonic() + _RESTART_STOP_S)):
        raise JobError(
            "invalid_state",
            f"job {jd.job_id}: Slurm job {slurm_id} did not end; not restarted",
            retryable=True,
            details={"job_id": jd.job_id, "slurm_job_id": slurm_id},
        )


def _stop_all(jd: JobDir, state: dict[str, Any]) -> Flow[None]:
    """End every process of the job and its supervisor, or refuse the restart.

    A live supervisor is asked to end the job as ``kill`` does (no /proc scan); it exits
    once every process of the job is gone. Without one, the job's processes are found through
    /proc. A supervisor that has not recorded the end a grace after the job's processes are
    gone does not respond: it is killed rather than waited for.
    """
    deadline = time.monotonic() + _RESTART_STOP_S
    supervisor = live_supervisor(jd, state)
    left: list[int] = []
    if supervisor is not None and not records.is_ended(state):
        yield from end_job(jd, supervisor, "SIGTERM", deadline)
    else:
        meta = jd.read_meta()
        left = yield from stop_job(jd.job_id, state.get("pid"), signal.SIGTERM, meta["kill_after_ms"] / 1000, deadline)
        if not left and supervisor is not None and procs.is_supervisor_of(supervisor, str(jd.path)):
            ended = yield from wait_for_end(jd, time.monotonic() + SUPERVISOR_GRACE_S)
            if not records.is_ended(ended):
                yield from kill_supervisor(jd, supervisor)
    # Having recorded the end, the supervisor finishes its deliveries and exits on its own.
    while not left and supervisor is not None and procs.is_supervisor_of(supervisor, str(jd.path)):
        if time.monotonic() >= deadline:
            left = procs.job_processes(jd.job_id, state.get("pid")) or [supervisor]
            break
        yield from wait_any_exit([supervisor], deadline - time.monotonic())
    if left:
        raise JobError(
            "invalid_state",
            f"job {jd.job_id}: processes {left} did not end; not restarted",
            retryable=True,
            details={"job_id": jd.job_id, "pids": left},
        )
