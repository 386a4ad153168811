"""list: the jobs of a tree (or all of them), newest first, filtered by state and tags.

Read through the store's index (:mod:`jobcore.index`), which reads only the records that
changed; when the index cannot be used (a read-only root, say) every record is read instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import cursor, index
from ..errors import JobError
from ..inputs import ListInput
from ..payloads import ListEntry, ListPayload, SlurmInfo
from ..slurm import jobfile
from ..store import JobDir, Store
from ..supervisor import records
from ._context import Context
from .create import check_cwd


def list_jobs(ctx: Context, inp: ListInput) -> ListPayload:
    wanted = index.Filter(
        scope=None if inp.all else check_cwd(inp.cwd),
        state=inp.state,
        tags=inp.tags,
        after=None if inp.cursor is None else cursor.decode(inp.cursor),
        limit=inp.limit,
    )
    try:
        page = index.list_page(ctx.store, wanted)
    except index.Unavailable:
        page = scan_page(ctx.store, wanted)
    return ListPayload(
        root=str(ctx.store.root),
        jobs=[_entry(ctx.store, job) for job in page.jobs],
        truncated=page.truncated,
        next_cursor=cursor.encode(page.jobs[-1].position) if page.truncated else None,
        skipped=page.skipped,
    )


def _entry(store: Store, job: index.Job) -> ListEntry:
    job_dir = store.root / job.job_id
    slurm = jobfile.is_slurm(job_dir)
    return ListEntry(
        job_id=job.job_id,
        state=job.state,  # type: ignore[arg-type]
        command=job.command,
        cwd=job.cwd,
        tags=job.tags,
        exit_code=job.exit_code,
        reason=job.reason,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        backend="slurm" if slurm else None,
        # Slurm is not asked here: a listing of many jobs would ask once per job.
        slurm=SlurmInfo(job_id=jobfile.job_id(job_dir)) if slurm else None,
    )


def scan_page(store: Store, wanted: index.Filter) -> index.Page:
    """The page ``wanted`` asks for, read from every record: the listing without the index."""
    jobs: list[index.Job] = []
    skipped = 0
    for entry in job_entries(store):
        if entry is None:
            skipped += 1
            continue
        jd, meta, state = entry
        job = index.Job(
            job_id=jd.job_id,
            created_at=meta["created_at"],
            created_ns=meta.get("created_ns", 0),
            cwd=meta["cwd"],
            command=meta["command"],
            tags=meta["tags"],
            state=records.status(state),
            exit_code=records.exit_code(state),
            reason=state.get("reason"),
            started_at=records.started_at(state),
            finished_at=state.get("finished_at"),
            updated_at=state["updated_at"],
        )
        if _matches(job, wanted):
            jobs.append(job)
    jobs.sort(key=lambda job: job.position, reverse=True)
    truncated = bool(wanted.limit) and len(jobs) > wanted.limit
    return index.Page(jobs[: wanted.limit] if wanted.limit else jobs, truncated, skipped)


def _matches(job: index.Job, wanted: index.Filter) -> bool:
    scope = wanted.scope
    if scope is not None and job.cwd != scope and not job.cwd.startswith(scope.rstrip("/") + "/"):
        return False
    if wanted.state is not None and job.state != wanted.state:
        return False
    if wanted.after is not None and not job.position < wanted.after:
        return False
    return all(_tag_matches(job.tags, t) for t in wanted.tags)


def job_entries(store: Store) -> Iterator[tuple[JobDir, dict[str, Any], dict[str, Any]] | None]:
    """(job dir, meta, observed state) of every job; None for an unreadable one."""
    for job_id in store.job_ids():
        jd = JobDir(store.root, job_id)
        try:
            yield jd, jd.read_meta(), jd.observed_state()
        except (OSError, ValueError, KeyError, JobError):
            yield None


def _tag_matches(tags: list[str], wanted: str) -> bool:
    if wanted.endswith(".*"):
        base = wanted[:-2]
        return any(t == base or t.startswith(base + ".") for t in tags)
    return wanted in tags
