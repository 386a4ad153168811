"""start and run: launch a created job (run creates it first), then watch it like every launch."""

from __future__ import annotations

import time

from ..errors import JobError
from ..idempotency import forget
from ..inputs import RunInput, StartInput
from ..payloads import LaunchPayload
from ..retention import auto_clean
from ..supervisor import records
from ..waiting import Flow
from ._context import Context
from ._launching import check_definition, check_room, launch_job, launch_slot
from ._observe import capped_max_bytes, watch_launched
from .create import keyed_job


def start(ctx: Context, inp: StartInput) -> Flow[LaunchPayload]:
    started = time.monotonic()
    max_bytes, lowered = capped_max_bytes(inp.max_bytes)
    jd = ctx.store.open(inp.job_id)
    with jd.lock():
        state = jd.read_state()
        if records.status(state) != "created":
            raise JobError(
                "invalid_state",
                f"job {jd.job_id} is {state['job']['status']}; only a created job can be started",
                details={"job_id": jd.job_id, "state": records.status(state)},
            )
        check_definition(ctx.policy, jd.read_meta())
        with launch_slot(ctx, jd):
            yield from launch_job(ctx, jd)
    auto_clean(ctx.store.root)
    return (yield from watch_launched("start", jd, inp, started, max_bytes, lowered, ctx.budget_bytes, until=inp.until))


def run(ctx: Context, inp: RunInput) -> Flow[LaunchPayload]:
    started = time.monotonic()
    max_bytes, lowered = capped_max_bytes(inp.max_bytes)
    check_room(ctx)  # a full store refuses before creating anything
    jd, existing = keyed_job(ctx, inp, launching=True)
    if existing:
        return (
            yield from watch_launched(
                "run", jd, inp, started, max_bytes, lowered, ctx.budget_bytes, existing=True, until=inp.until
            )
        )
    with jd.lock():
        try:
            with launch_slot(ctx, jd):
                yield from launch_job(ctx, jd)
        except JobError as exc:
            if exc.code == "policy_denied":  # filled meanwhile by another launch: undo the create
                jd.remove()
                if inp.idempotency_key is not None:
                    forget(ctx.store, inp.idempotency_key, jd.job_id)
            raise
    auto_clean(ctx.store.root)
    return (yield from watch_launched("run", jd, inp, started, max_bytes, lowered, ctx.budget_bytes, until=inp.until))
