"""What a listing asks for and what it gets: the filter, the jobs as the index holds them, the page.

Named tuples, not dataclasses: a dataclass is compiled when its module is imported, which a cold
``agent-jobs ls`` pays for (a few milliseconds each).
"""

from __future__ import annotations

from typing import NamedTuple


class Filter(NamedTuple):
    """What a listing asks for; ``after`` is a cursor position, ``limit`` 0 means all."""

    scope: str | None
    state: str | None
    tags: list[str]
    after: tuple[str, int, str] | None
    limit: int


class Job(NamedTuple):
    """One job as the index holds it."""

    job_id: str
    created_at: str
    created_ns: int
    cwd: str
    command: str | list[str]
    tags: list[str]
    state: str
    exit_code: int | None
    reason: str | None
    started_at: str | None
    finished_at: str | None
    updated_at: str

    @property
    def position(self) -> tuple[str, int, str]:
        return (self.created_at, self.created_ns, self.job_id)


class Page(NamedTuple):
    """A listing's page: its jobs, whether more follow, and how many unreadable jobs were left out."""

    jobs: list[Job]
    truncated: bool
    skipped: int
