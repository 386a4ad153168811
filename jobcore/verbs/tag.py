"""tag: replace a job's tags."""

from __future__ import annotations

from .. import index
from ..inputs import TagInput
from ..payloads import TagPayload
from ._context import Context


def tag(ctx: Context, inp: TagInput) -> TagPayload:
    jd = ctx.store.open(inp.job_id)
    with jd.lock():
        meta = jd.read_meta()
        meta["tags"] = inp.tags
        jd.write_meta(meta)
        index.refresh(jd.root, [jd.job_id])  # an ended job's row is otherwise re-read only in turn
    return TagPayload(job_id=jd.job_id, tags=inp.tags)
