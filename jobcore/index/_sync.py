"""Keeping the index's rows current with the files: the sync before each read, the sweep of
ended jobs, the re-check of a page, and writing the rows of jobs read."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import JobError
from ..store import FILE_MODE, JobDir
from ..supervisor import fsio, records
from . import _listing as listing
from . import _watch
from ._db import index_path, set_setting, setting, writing
from ._files import MISSING, UNTRUSTED, read, row_of, stat_sig, trusted

#: Where the sweep has got to: a position lost or torn only restarts the sweep.
SWEEP_FILE = "sweep"
#: Rows of ended jobs re-checked on each read, in turn: every row is checked within
#: ``ceil(jobs / SWEEP_ROWS)`` reads even if no read returns it.
SWEEP_ROWS = 500
#: Rows the sweep re-checks on a read that listed the root: that read has spent its time already
#: (the listing), and the sweep still goes on, so even if every read lists the root every row is
#: checked within ``ceil(jobs / SWEEP_ROWS_LISTED)`` reads.
SWEEP_ROWS_LISTED = 100
#: New records read per transaction when (re)building, so other processes are not held up long.
CHUNK = 2000
#: Names the saved listing may lag behind the root before it is saved again: saving writes every
#: name (3 MB at 100,000 jobs), while a name added since costs each read a find and a row lookup.
LISTING_SLACK = 32
#: The setting naming this index file's generation (see :mod:`._watch`).
GENERATION_KEY = "generation"
_JOB_ID = re.compile(r"[0-9a-f]{32}")

_COLUMNS = (
    "id, readable, created_at, created_ns, cwd, command, tags, state, exit_code, reason,"
    " started_at, finished_at, updated_at, meta_sig, state_sig, volatile"
)
_INSERT = f"INSERT OR REPLACE INTO jobs ({_COLUMNS}) VALUES ({', '.join(':' + c.strip() for c in _COLUMNS.split(','))})"


def sync(db: sqlite3.Connection, root: Path) -> None:
    """Bring the rows up to date with the files, reading only what may have changed:
    the root's entries (when the root changed), the jobs not ended, and a turn of the sweep.
    Nothing is written when nothing changed, so a quiet store costs no commit."""
    # Watched before the root is looked at: every change from here on is an event.
    watch = _watch.watching(root)
    now = time.time_ns()
    info = os.stat(root)
    changed = max(info.st_mtime_ns, info.st_ctime_ns)
    root_sig = trusted(f"{info.st_ino}:{info.st_mtime_ns}:{info.st_ctime_ns}", changed, now)
    stored_sig = setting(db, "root")
    generation = setting(db, GENERATION_KEY)
    listed = False
    if watch is None or not _synced_from_events(db, root, watch, (info.st_dev, info.st_ino), root_sig, generation):
        listed = root_sig == UNTRUSTED or stored_sig != root_sig
        if listed:
            _sync_entries(db, root, root_sig, stored_sig)
        if watch is not None and not watch.closed and watch.dir == (info.st_dev, info.st_ino):
            # The rows of this index now cover every name in the root as it was after the watch was added.
            watch.covered = generation or _new_generation(db)
    volatile = db.execute("SELECT id, meta_sig, state_sig FROM jobs WHERE volatile = 1").fetchall()
    sweep_rows = SWEEP_ROWS_LISTED if listed else SWEEP_ROWS
    swept = db.execute(
        "SELECT id, meta_sig, state_sig FROM jobs WHERE volatile = 0 AND id > ? ORDER BY id LIMIT ?",
        (_sweep_position(root), sweep_rows),
    ).fetchall()
    _save_sweep_position(root, swept[-1][0] if swept and len(swept) == sweep_rows else "")
    if changed := _changed(root, volatile + swept):
        with writing(db):
            store_rows(db, root, changed)


def _synced_from_events(
    db: sqlite3.Connection,
    root: Path,
    watch: _watch.Watch,
    root_dir: tuple[int, int],
    root_sig: str,
    generation: str | None,
) -> bool:
    """Rows for the names the watch says were added or removed since the last read (each one's
    directory read again, or its row dropped if it is gone); False when the watch cannot tell,
    and the root must be listed."""
    with watch.lock:
        if watch.closed or generation is None or watch.covered != generation:
            return False
        if watch.dir != root_dir:  # another directory at the root's path now
            _watch.drop(root, watch)
            return False
        try:
            names = watch.changed()
            if names is None:
                _watch.drop(root, watch)
                return False
            job_ids = _job_ids(names)
            if not job_ids and setting(db, "root") == root_sig:
                return True
            chunks = [job_ids[start : start + CHUNK] for start in range(0, len(job_ids), CHUNK)] or [[]]
            for chunk in chunks[:-1]:
                with writing(db):
                    store_rows(db, root, chunk)
            with writing(db):
                store_rows(db, root, chunks[-1])
                # The root looked at before the events were drained: the rows cover it.
                set_setting(db, "root", root_sig)
        except BaseException:
            _watch.drop(root, watch)  # the events drained are lost with it
            raise
    return True


def _new_generation(db: sqlite3.Connection) -> str:
    """This index's generation, set once in its life: an index rebuilt (its settings with it) has another."""
    with writing(db):
        generation = setting(db, GENERATION_KEY) or secrets.token_hex(8)
        set_setting(db, GENERATION_KEY, generation)
    return generation


def _sync_entries(db: sqlite3.Connection, root: Path, root_sig: str, stored_sig: str | None) -> None:
    """Rows for the job directories added to the root, none for those removed: the root is listed
    and compared with the listing saved before, or, without one, with the rows."""
    seen = listing.load(db, root)
    names = os.listdir(root)
    now_listed = listing.joined(names)
    if seen.names is not None:
        changed = listing.changes(seen.names, now_listed)
        added, removed = ({os.fsdecode(n) for n in c} for c in changed)
        # The saved listing may lag behind by a few names whose rows are there already.
        new = _without_rows(db, _job_ids(added))
        lagging = len(added) + len(removed) > LISTING_SLACK
    else:
        known = set((db.execute("SELECT group_concat(id, ' ') FROM jobs").fetchone()[0] or "").split())
        present = set(names)
        new, removed, lagging = _job_ids(present - known), known - present, True
    # A row is dropped only when its directory is gone now, not merely absent from an older listing.
    gone = [i for i in _job_ids(removed) if not os.path.isdir(f"{root}/{i}")]
    if not (new or gone or lagging or stored_sig != root_sig):
        return
    chunks = [new[start : start + CHUNK] for start in range(0, len(new), CHUNK)] or [[]]
    for chunk in chunks[:-1]:
        with writing(db):
            store_rows(db, root, chunk)
    with writing(db):
        unchanged = listing.still(db, seen)
        dropped = store_rows(db, root, chunks[-1])
        delete_rows(db, gone)
        set_setting(db, "root", root_sig)
        # Removing rows made the saved listing unusable: save this one, less the jobs gone since.
        if unchanged and (lagging or gone or dropped):
            if dropped:
                now_listed = listing.joined([n for n in names if n not in dropped])
            listing.save(db, root, now_listed)


def _job_ids(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if _JOB_ID.fullmatch(n))


def _without_rows(db: sqlite3.Connection, job_ids: list[str]) -> list[str]:
    """Those of these ids that have no row."""
    known: set[str] = set()
    for start in range(0, len(job_ids), CHUNK):
        chunk = job_ids[start : start + CHUNK]
        query = f"SELECT id FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})"
        known.update(row[0] for row in db.execute(query, chunk))
    return [i for i in job_ids if i not in known]


def _sweep_path(root: Path) -> Path:
    return index_path(root).parent / SWEEP_FILE


def _sweep_position(root: Path) -> str:
    """The last id the sweep checked (a file beside the index: writing it costs no commit)."""
    try:
        with open(_sweep_path(root), encoding="ascii") as f:
            position = f.read().strip()
    except (OSError, ValueError):
        return ""
    return position if _JOB_ID.fullmatch(position) else ""


def _save_sweep_position(root: Path, position: str) -> None:
    with contextlib.suppress(OSError):
        # Always 32 bytes, written over the last: no truncation, which costs more than the write.
        fd = os.open(_sweep_path(root), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            os.write(fd, position.ljust(32).encode())
        finally:
            os.close(fd)


def recheck(db: sqlite3.Connection, root: Path, rows: list[tuple[Any, ...]]) -> bool:
    """Check a page's rows against their files (a running or queued job's lost supervisor is
    noticed and recorded, as every read does); whether any row changed."""
    for row in rows:
        if row[6] in ("running", "queued"):
            with contextlib.suppress(OSError, ValueError, KeyError, JobError):
                JobDir(root, row[0]).observed_state()
    changed = _changed(root, [(r[0], r[12], r[13]) for r in rows])
    if changed:
        with writing(db):
            store_rows(db, root, changed)
    return bool(changed)


def _changed(root: Path, rows: list[tuple[str, str, str]]) -> list[str]:
    """The ids whose files' signatures are not the ones recorded (or never were trusted)."""
    now = time.time_ns()
    return [
        job_id
        for job_id, meta_sig, state_sig in rows
        if meta_sig == UNTRUSTED
        or state_sig == UNTRUSTED
        or stat_sig(f"{root}/{job_id}/{fsio.META}", now) != meta_sig
        or stat_sig(f"{root}/{job_id}/{fsio.STATE}", now) != state_sig
    ]


def store_rows(db: sqlite3.Connection, root: Path, job_ids: list[str]) -> set[str]:
    """Read these jobs' files and write their rows (the caller holds the write transaction);
    the ids dropped because their directories are gone."""
    now = time.time_ns()
    gone = []
    for job_id in job_ids:
        meta, meta_sig = read(f"{root}/{job_id}/{fsio.META}", now)
        state, state_sig = read(f"{root}/{job_id}/{fsio.STATE}", now)
        if meta_sig == MISSING and not (root / job_id).is_dir():
            gone.append(job_id)
            continue
        row, tags = row_of(job_id, meta, state)
        volatile = (
            not row["readable"] or row["state"] not in records.TERMINAL_STATES or UNTRUSTED in (meta_sig, state_sig)
        )
        row.update(meta_sig=meta_sig, state_sig=state_sig, volatile=int(volatile))
        db.execute(_INSERT, row)
        db.execute("DELETE FROM tags WHERE id = ?", (job_id,))
        db.executemany("INSERT OR IGNORE INTO tags (tag, id) VALUES (?, ?)", [(t, job_id) for t in tags])
    delete_rows(db, gone)
    return set(gone)


def delete_rows(db: sqlite3.Connection, job_ids: list[str]) -> None:
    if job_ids:
        listing.forget(db)  # a listing naming them must not be trusted if they come back
    db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in job_ids])
    db.executemany("DELETE FROM tags WHERE id = ?", [(i,) for i in job_ids])
