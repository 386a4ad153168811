"""The listing without the index: every job's records read from the files. Used when the index
cannot be (a root this user cannot write to, a store with no jobs yet), and as the reference the
index is tested and measured against."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import JobError
from ..store import JobDir, Store
from ..supervisor import records
from ._page import Filter, Job, Page


def scan_page(store: Store, wanted: Filter) -> Page:
    """The page ``wanted`` asks for, read from every record."""
    jobs: list[Job] = []
    skipped = 0
    for entry in job_entries(store):
        if entry is None:
            skipped += 1
            continue
        jd, meta, state = entry
        job = Job(
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
    return Page(jobs[: wanted.limit] if wanted.limit else jobs, truncated, skipped)


def _matches(job: Job, wanted: Filter) -> bool:
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
