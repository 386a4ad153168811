"""delete: remove one job, or every ended job older than an age, by the one deletion rule."""

from __future__ import annotations

import time

from ..deletion import delete_if_allowed, live_jobs
from ..errors import JobError, invalid_input
from ..index import job_entries
from ..inputs import DeleteInput
from ..payloads import DeleteEntry, DeletePayload
from ..store import JobDir
from ..supervisor import records
from ..times import parse_age
from ._context import Context


def delete(ctx: Context, inp: DeleteInput) -> DeletePayload:
    if (inp.job_id is None) == (inp.finished_older_than is None):
        raise invalid_input("give job_id or finished_older_than (exactly one)", field="job_id")
    results: list[DeleteEntry] = []
    if inp.job_id is not None:
        jd = ctx.store.open(inp.job_id)
        results.append(_delete_one(jd, jd.observed_state(), inp.dry_run, None, None))
    else:
        cutoff = time.time() - parse_age(inp.finished_older_than or "")
        live = live_jobs()
        for entry in job_entries(ctx.store):
            if entry is not None:
                jd, _, state = entry
                results.append(_delete_one(jd, state, inp.dry_run, cutoff, live))
    return DeletePayload(
        root=str(ctx.store.root),
        dry_run=inp.dry_run,
        deleted=sum(r.action == "deleted" for r in results),
        skipped=sum(r.action == "skipped" for r in results),
        jobs=results,
    )


def _delete_one(
    jd: JobDir, seen: dict, dry_run: bool, finished_before: float | None, live: set[str] | None
) -> DeleteEntry:
    try:
        return delete_if_allowed(jd, finished_before=finished_before, dry_run=dry_run, live=live)
    except JobError:
        return DeleteEntry(job_id=jd.job_id, state=records.status(seen), action="skipped", reason="gone")
