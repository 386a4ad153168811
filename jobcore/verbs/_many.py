"""The jobs a call on several jobs is about: ``job_ids`` (ids or prefixes) or ``tags``."""

from __future__ import annotations

from typing import Any

from ..errors import JobError
from ..inputs import MAX_JOB_IDS, ListInput, ManyJobs
from ..linewatch import LineWatch
from ..payloads import JobEnd
from ..store import JobDir
from ..supervisor import records
from ._context import Context
from .list import list_jobs


def many_jobs(ctx: Context, inp: ManyJobs) -> list[JobDir]:
    """The named jobs, each once, in the order given (with ``tags``: newest first)."""
    if inp.tags is not None:
        listed = list_jobs(ctx, ListInput(tags=inp.tags, all=True, limit=0))
        if not listed.jobs:
            raise JobError("job_not_found", f"no job has tags {inp.tags}", details={"field": "tags", "tags": inp.tags})
        if len(listed.jobs) > MAX_JOB_IDS:
            raise JobError(
                "invalid_input",
                f"tags: {inp.tags} match {len(listed.jobs)} jobs, more than {MAX_JOB_IDS}; name fewer",
                details={"field": "tags", "tags": inp.tags, "matched": len(listed.jobs)},
            )
        return [ctx.store.open(entry.job_id) for entry in listed.jobs]
    ids = inp.job_ids if inp.job_ids is not None else [inp.job_id]
    seen: dict[str, JobDir] = {}
    for job_id in ids:
        jd = ctx.store.open(job_id)
        seen.setdefault(jd.job_id, jd)
    return list(seen.values())


def job_end(job_id: str, state: dict[str, Any], watch: LineWatch | None = None) -> JobEnd:
    """One job's entry in a payload on several jobs."""
    fields = records.end_fields(state)
    return JobEnd(
        job_id=job_id,
        state=records.status(state),
        exit_code=fields.get("exit_code"),
        signal=fields.get("signal"),
        reason=fields.get("reason"),
        finished_at=fields.get("finished_at"),
        matched=None if watch is None else watch.matched,
    )
