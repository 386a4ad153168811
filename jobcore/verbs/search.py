"""search: the lines of a job's logs that match a pattern, with context, paged by byte offsets.

With ``stream: either`` stdout is searched first, then stderr from its offset: matches come
stdout's in log order, then stderr's (see docs/tools.md). The payload is kept within the budget
by returning fewer matches; the next offsets then point at the first one left out.
"""

from __future__ import annotations

import json

from ..budget import over_budget
from ..inputs import SearchInput
from ..logsearch import Scan, compile_pattern, scan
from ..payloads import Match, SearchPayload
from ..supervisor import records
from ._context import Context


def search(ctx: Context, inp: SearchInput) -> SearchPayload:
    pat = compile_pattern(inp.pattern, inp.match_type, inp.ignore_case)
    jd = ctx.store.open(inp.job_id)
    state = records.status(jd.observed_state())
    streams = ["stdout", "stderr"] if inp.stream == "either" else [inp.stream]
    paths = {"stdout": jd.stdout_path, "stderr": jd.stderr_path}
    starts = {"stdout": inp.stdout_offset, "stderr": inp.stderr_offset}
    scans: dict[str, Scan] = {}
    room = inp.max_matches
    for stream in streams:
        if any(s.more for s in scans.values()):
            # stdout had more matches than room: stderr is left for the next call, from its start.
            scans[stream] = Scan([], starts[stream], False, 0)
            continue
        # With no room left, the scan still says whether a match remains (truncated).
        scans[stream] = scan(paths[stream], stream, starts[stream], pat, inp.context_lines, room)
        room -= len(scans[stream].found)
    found = [(stream, f) for stream in streams for f in scans[stream].found]
    truncated = any(s.more for s in scans.values())
    next_offsets = {stream: s.next_offset for stream, s in scans.items()}

    def build(kept: int, context: int = inp.context_lines) -> SearchPayload:
        offsets = dict(next_offsets)
        for stream, f in reversed(found[kept:]):
            offsets[stream] = f.offset  # the first match left out, per stream
            if stream == "stdout" and "stderr" in offsets:
                offsets["stderr"] = starts["stderr"]
        matches = [Match(**vars(f)) for _, f in found[:kept]]
        if context < inp.context_lines:
            matches = [
                m.model_copy(update={"before": m.before[-context:] if context else [], "after": m.after[:context]})
                for m in matches
            ]
        return SearchPayload(
            job_id=jd.job_id,
            state=state,
            matches=matches,
            match_count=len(matches),
            truncated=truncated or kept < len(found),
            next_stdout_offset=offsets.get("stdout"),
            next_stderr_offset=offsets.get("stderr"),
            scanned_bytes=sum(s.scanned_bytes for s in scans.values()),
        )

    if ctx.budget_bytes is None:
        return build(len(found))
    # Sized match by match first, so a long list is cut in one step, then checked whole.
    room_left = -over_budget(build(0), ctx.budget_bytes)
    kept = 0
    for _, f in found:
        room_left -= len(json.dumps(Match(**vars(f)).model_dump(mode="json"))) + 2
        if room_left < 0:
            break
        kept += 1
    kept = max(kept, min(1, len(found)))
    payload = build(kept)
    while kept > 1 and over_budget(payload, ctx.budget_bytes) > 0:
        kept -= 1
        payload = build(kept)
    # One match too large with its context: fewer lines of context, never no match (a pager must move on).
    context = inp.context_lines
    while context > 0 and over_budget(payload, ctx.budget_bytes) > 0:
        context -= 1
        payload = build(kept, context)
    return payload
