"""An index of the store in SQLite, so that listing reads only the records that changed.

The files stay the truth: the index (``<root>/.index/index.sqlite3``) is a cache of each job's
``meta.json`` and ``state.json``, rebuilt from them when it is missing, corrupt or of another
schema. Every write to it happens inside one ``BEGIN IMMEDIATE`` transaction that also reads
the files it records, so the last writer always saw the newest files. What each read checks,
and so exactly what it guarantees, is in ``docs/store.md`` (section "The index").

A record's signature is ``inode:size:mtime_ns:ctime_ns`` of the file read (from ``fstat`` of
the very descriptor read). The ctime is there because nobody can set it: a backup restored over
a file with ``cp -p`` keeps its inode, maybe its size, and puts back its old mtime. A file whose
ctime is within :data:`SETTLE_NS` of the moment it was looked at is not trusted (signature
``""``): a write in the same clock tick could leave it unchanged, so such a row is checked
again on every read until it settles.

The package: ``_db`` (the SQLite file), ``_files`` (records and their signatures), ``_sync``
(keeping the rows current), ``_listing`` (the root's listing as last seen), ``_page`` (what a
listing asks for and gets) and ``_scan`` (the listing without the index, from every record); the
tunables live where they are read, so tests patch them there. It imports neither pydantic nor
the verbs, so ``agent-jobs ls`` can read it without them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..store import Store
from ..supervisor import fsio
from ._db import Unavailable, index_path, open_index, writing
from ._files import SETTLE_NS
from ._page import Filter, Job, Page
from ._scan import job_entries, scan_page
from ._sync import delete_rows, recheck, store_rows, sync

__all__ = [
    "SETTLE_NS",
    "Filter",
    "Job",
    "Page",
    "Unavailable",
    "forget",
    "index_path",
    "job_entries",
    "list_page",
    "read_page",
    "refresh",
    "scan_page",
]

#: How often a page is re-queried when its rows turn out to have changed on disk.
MAX_REQUERIES = 3
_PAGE_COLUMNS = (
    "id, created_at, created_ns, cwd, command, tags, state, exit_code, reason, started_at,"
    " finished_at, updated_at, meta_sig, state_sig"
)


def read_page(store: Store, wanted: Filter) -> Page:
    """The page ``wanted`` asks for: through the index, or from every record when it cannot be used."""
    try:
        return list_page(store, wanted)
    except Unavailable:
        return scan_page(store, wanted)


def list_page(store: Store, wanted: Filter) -> Page:
    """The page of jobs ``wanted`` asks for, every row on it checked against its files."""
    if not store.root.is_dir():
        raise Unavailable(f"{store.root} is not a directory")
    if not index_path(store.root).exists() and not store.job_ids():
        raise Unavailable("no jobs yet: reading an empty store creates nothing")
    with open_index(store.root) as db:
        sync(db, store.root)
        rows = _query(db, wanted)
        for _ in range(MAX_REQUERIES):
            if not recheck(db, store.root, rows):
                break
            rows = _query(db, wanted)
        skipped = db.execute("SELECT count(*) FROM jobs WHERE readable = 0").fetchone()[0]
    limit = wanted.limit
    truncated = bool(limit) and len(rows) > limit
    page = rows[:limit] if limit else rows
    return Page([_job(r) for r in page], truncated, skipped)


def refresh(root: Path, job_ids: Iterable[str]) -> None:
    """Re-read these jobs' records into an existing index (after a write); never raises."""
    if not index_path(root).exists():
        return
    with contextlib.suppress(Unavailable, sqlite3.Error, OSError), open_index(root) as db, writing(db):
        store_rows(db, root, list(job_ids))


def forget(root: Path, job_id: str) -> None:
    """Drop a deleted job from an existing index; never raises (the next read would see it gone)."""
    if not index_path(root).exists():
        return
    with contextlib.suppress(Unavailable, sqlite3.Error, OSError), open_index(root) as db, writing(db):
        delete_rows(db, [job_id])


# --- reading a page ---


_HAS_TAG = "SELECT 1 FROM tags t WHERE t.id = jobs.id"


def _query(db: sqlite3.Connection, wanted: Filter) -> list[tuple[Any, ...]]:
    where = ["readable = 1"]
    args: list[Any] = []
    if wanted.state is not None:
        where.append("state = ?")
        args.append(wanted.state)
    if wanted.scope is not None and wanted.scope != "/":
        prefix = wanted.scope.rstrip("/") + "/"
        # The tree under the scope: the range of strings that start with "<scope>/".
        where.append("(cwd = ? OR (cwd >= ? AND cwd < ?))")
        args += [wanted.scope, prefix, prefix[:-1] + "0"]
    for tag in wanted.tags:
        if tag.endswith(".*"):
            base = tag[:-2]
            where.append(f"EXISTS ({_HAS_TAG} AND (t.tag = ? OR (t.tag >= ? AND t.tag < ?)))")
            args += [base, base + ".", base + "/"]
        else:
            where.append(f"EXISTS ({_HAS_TAG} AND t.tag = ?)")
            args.append(tag)
    if wanted.after is not None:
        where.append("(created_at, created_ns, id) < (?, ?, ?)")
        args += list(wanted.after)
    limit = f" LIMIT {wanted.limit + 1}" if wanted.limit else ""
    sql = (
        f"SELECT {_PAGE_COLUMNS} FROM jobs WHERE {' AND '.join(where)}"
        f" ORDER BY created_at DESC, created_ns DESC, id DESC{limit}"
    )
    return db.execute(sql, args).fetchall()


def _job(row: tuple[Any, ...]) -> Job:
    return Job(
        job_id=row[0],
        created_at=row[1],
        created_ns=row[2],
        cwd=row[3],
        command=fsio.loads(row[4]),  # type: ignore[arg-type]
        tags=fsio.loads(row[5]),  # type: ignore[arg-type]
        state=row[6],
        exit_code=row[7],
        reason=row[8],
        started_at=row[9],
        finished_at=row[10],
        updated_at=row[11],
    )
