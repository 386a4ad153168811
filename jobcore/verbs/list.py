"""list: the jobs of a tree (or all of them), newest first, filtered by state and tags.

Read through the store's index (:mod:`jobcore.index`), which reads only the records that
changed; when the index cannot be used (a read-only root, say) every record is read instead.
"""

from __future__ import annotations

from .. import cursor, index
from ..inputs import ListInput
from ..payloads import ListEntry, ListPayload, SlurmInfo
from ..slurm import jobfile
from ..store import Store
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
    page = index.read_page(ctx.store, wanted)
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
