"""wait: watch one job or several until they end (or a line matches) or the deadline passes.

The jobs themselves are never touched.
"""

from __future__ import annotations

import time

from ..inotify import Inotify
from ..inputs import WaitInput
from ..linewatch import watches
from ..payloads import Snapshot, WaitPayload
from ..supervisor import records
from ..waiting import Flow
from ._context import Context
from ._many import job_end, many_jobs
from ._observe import backend_fields, capped_max_bytes, events, fitted_payload, ms, wait_for_end, wait_for_ends

#: How long wait watches the job when no ``wait_seconds`` is given.
DEFAULT_WAIT_S = 30.0


def wait(ctx: Context, inp: WaitInput) -> Flow[WaitPayload]:
    if inp.job_id is None:
        return (yield from _wait_many(ctx, inp))
    max_bytes, lowered = capped_max_bytes(inp.max_bytes)
    jd = ctx.store.open(inp.job_id)
    wait_s = DEFAULT_WAIT_S if inp.wait_seconds is None else inp.wait_seconds
    begun = time.monotonic()
    with Inotify() as notify:
        [line_watch] = watches([jd], inp.until, notify)
        state = yield from wait_for_end(jd, begun + wait_s, line_watch)
    waited_ms = ms(time.monotonic() - begun)
    ended = records.is_ended(state)
    matched = None if line_watch is None else line_watch.matched
    found_events = events(jd)
    slurm = backend_fields(jd, state)

    def build(snap: Snapshot) -> WaitPayload:
        return WaitPayload(
            job_id=jd.job_id,
            state=records.status(state),
            waited_ms=waited_ms,
            timed_out=not ended and matched is None,
            events=found_events,
            snapshot=None if ended else snap,
            final_snapshot=snap if ended else None,
            matched=matched,
            lowered_to=lowered,
            **slurm,
            **records.end_fields(state),
        )

    return fitted_payload(jd, build, ctx.budget_bytes, inp.tail_lines, max_bytes)


def _wait_many(ctx: Context, inp: WaitInput) -> Flow[WaitPayload]:
    jds = many_jobs(ctx, inp)
    wait_s = DEFAULT_WAIT_S if inp.wait_seconds is None else inp.wait_seconds
    begun = time.monotonic()
    with Inotify() as notify:
        line_watches = watches(jds, inp.until, notify)
        states, ended = yield from wait_for_ends(jds, line_watches, notify, inp.mode, begun + wait_s)
    done = len(ended) == len(jds) if inp.mode == "all" else bool(ended)
    return WaitPayload(
        waited_ms=ms(time.monotonic() - begun),
        timed_out=not done,
        jobs=[job_end(jd.job_id, states[jd.job_id], watch) for jd, watch in zip(jds, line_watches, strict=True)],
        ended=ended,
    )
