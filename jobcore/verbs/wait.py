"""wait: watch a job until it ends or the deadline passes; the job itself is never touched."""

from __future__ import annotations

import time

from ..inputs import WatchInput
from ..payloads import Snapshot, WaitPayload
from ..supervisor import records
from ..waiting import Flow
from ._context import Context
from ._observe import capped_max_bytes, events, fitted_payload, ms, wait_for_end

#: How long wait watches the job when no ``wait_seconds`` is given.
DEFAULT_WAIT_S = 30.0


def wait(ctx: Context, inp: WatchInput) -> Flow[WaitPayload]:
    max_bytes, lowered = capped_max_bytes(inp.max_bytes)
    jd = ctx.store.open(inp.job_id)
    wait_s = DEFAULT_WAIT_S if inp.wait_seconds is None else inp.wait_seconds
    begun = time.monotonic()
    state = yield from wait_for_end(jd, begun + wait_s)
    waited_ms = ms(time.monotonic() - begun)
    ended = records.is_ended(state)

    def build(snap: Snapshot) -> WaitPayload:
        return WaitPayload(
            job_id=jd.job_id,
            state=records.status(state),
            waited_ms=waited_ms,
            timed_out=not ended,
            events=events(jd),
            snapshot=None if ended else snap,
            final_snapshot=snap if ended else None,
            lowered_to=lowered,
            **records.end_fields(state),
        )

    return fitted_payload(jd, build, ctx.budget_bytes, inp.tail_lines, max_bytes)
