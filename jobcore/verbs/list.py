"""list: the jobs of a tree (or all of them), newest first, filtered by state and tags."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import cursor
from ..errors import JobError
from ..inputs import ListInput
from ..payloads import ListEntry, ListPayload
from ..store import JobDir, Store
from ..supervisor import records
from ._context import Context
from .create import check_cwd


def list_jobs(ctx: Context, inp: ListInput) -> ListPayload:
    scope = None if inp.all else check_cwd(inp.cwd)
    jobs: list[tuple[cursor.Position, ListEntry]] = []
    skipped = 0
    for entry in job_entries(ctx.store):
        if entry is None:
            skipped += 1
            continue
        jd, meta, state = entry
        status = records.status(state)
        cwd = meta["cwd"]
        if scope is not None and cwd != scope and not cwd.startswith(scope.rstrip("/") + "/"):
            continue
        if inp.state is not None and status != inp.state:
            continue
        if not all(_tag_matches(meta["tags"], t) for t in inp.tags):
            continue
        order = (meta["created_at"], meta.get("created_ns", 0), jd.job_id)
        jobs.append(
            (
                order,
                ListEntry(
                    job_id=jd.job_id,
                    state=status,
                    command=meta["command"],
                    cwd=cwd,
                    tags=meta["tags"],
                    exit_code=records.exit_code(state),
                    reason=state.get("reason"),
                    created_at=meta["created_at"],
                    started_at=records.started_at(state),
                    finished_at=state.get("finished_at"),
                    updated_at=state["updated_at"],
                ),
            )
        )
    if inp.cursor is not None:
        after = cursor.decode(inp.cursor)
        jobs = [pair for pair in jobs if pair[0] < after]
    jobs.sort(key=lambda pair: pair[0], reverse=True)
    truncated = bool(inp.limit) and len(jobs) > inp.limit
    page = jobs[: inp.limit] if inp.limit else jobs
    return ListPayload(
        root=str(ctx.store.root),
        jobs=[entry for _, entry in page],
        truncated=truncated,
        next_cursor=cursor.encode(page[-1][0]) if truncated else None,
        skipped=skipped,
    )


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
