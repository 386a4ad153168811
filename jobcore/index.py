"""An index of the store in SQLite, so that listing reads only the records that changed.

The files stay the truth: the index (``<root>/.index.sqlite3``) is a cache of each job's
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
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import JobError
from .store import DIR_MODE, FILE_MODE, JobDir, Store
from .supervisor import fsio, records

#: The index lives in a directory of its own: SQLite creates and removes its ``-wal`` and
#: ``-shm`` files as connections come and go, which would change the root's mtime, the very
#: sign that tells a read whether jobs were added or removed.
INDEX_DIR = ".index"
INDEX_FILE = "index.sqlite3"
#: Where the sweep has got to: a position lost or torn only restarts the sweep.
SWEEP_FILE = "sweep"
#: Bumped when the tables change: an index of another version is rebuilt.
SCHEMA_VERSION = 1
#: An mtime this close to "now" may still change within its clock tick: not trusted yet.
SETTLE_NS = 1_000_000_000
#: Rows of ended jobs re-checked on each read, in turn: every row is checked within
#: ``ceil(jobs / SWEEP_ROWS)`` reads even if no read returns it.
SWEEP_ROWS = 500
#: New records read per transaction when (re)building, so other processes are not held up long.
CHUNK = 2000
#: How often a page is re-queried when its rows turn out to have changed on disk.
MAX_REQUERIES = 3
BUSY_TIMEOUT_MS = 30_000
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_MISSING = "-"
_UNTRUSTED = ""

_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    readable INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    cwd TEXT NOT NULL,
    command TEXT NOT NULL,
    tags TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    reason TEXT,
    started_at TEXT,
    finished_at TEXT,
    updated_at TEXT NOT NULL,
    meta_sig TEXT NOT NULL,
    state_sig TEXT NOT NULL,
    volatile INTEGER NOT NULL
);
CREATE INDEX jobs_order ON jobs (created_at, created_ns, id);
CREATE INDEX jobs_volatile ON jobs (volatile) WHERE volatile = 1;
CREATE INDEX jobs_unreadable ON jobs (readable) WHERE readable = 0;
CREATE TABLE tags (tag TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (tag, id)) WITHOUT ROWID;
CREATE INDEX tags_id ON tags (id);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = (
    "id, readable, created_at, created_ns, cwd, command, tags, state, exit_code, reason,"
    " started_at, finished_at, updated_at, meta_sig, state_sig, volatile"
)
_INSERT = f"INSERT OR REPLACE INTO jobs ({_COLUMNS}) VALUES ({', '.join(':' + c.strip() for c in _COLUMNS.split(','))})"
_PAGE_COLUMNS = (
    "id, created_at, created_ns, cwd, command, tags, state, exit_code, reason, started_at,"
    " finished_at, updated_at, meta_sig, state_sig"
)


class Unavailable(Exception):
    """The index cannot be used here (no root, not writable, locked too long): read the files."""


@dataclass(frozen=True)
class Filter:
    """What a listing asks for; ``after`` is a cursor position, ``limit`` 0 means all."""

    scope: str | None
    state: str | None
    tags: list[str]
    after: tuple[str, int, str] | None
    limit: int


@dataclass(frozen=True)
class Job:
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


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    truncated: bool
    skipped: int


def list_page(store: Store, wanted: Filter) -> Page:
    """The page of jobs ``wanted`` asks for, every row on it checked against its files."""
    if not store.root.is_dir():
        raise Unavailable(f"{store.root} is not a directory")
    if not index_path(store.root).exists() and not store.job_ids():
        raise Unavailable("no jobs yet: reading an empty store creates nothing")
    with _open(store.root) as db:
        _sync(db, store.root)
        rows = _query(db, wanted)
        for _ in range(MAX_REQUERIES):
            if not _recheck(db, store.root, rows):
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
    with contextlib.suppress(Unavailable, sqlite3.Error, OSError), _open(root) as db, _writing(db):
        _store_rows(db, root, list(job_ids))


def forget(root: Path, job_id: str) -> None:
    """Drop a deleted job from an existing index; never raises (the next read would see it gone)."""
    if not index_path(root).exists():
        return
    with contextlib.suppress(Unavailable, sqlite3.Error, OSError), _open(root) as db, _writing(db):
        _delete_rows(db, [job_id])


# --- opening, and rebuilding a broken index ---


def index_path(root: Path) -> Path:
    return root / INDEX_DIR / INDEX_FILE


@contextlib.contextmanager
def _open(root: Path) -> Iterator[sqlite3.Connection]:
    path = index_path(root)
    try:
        db = _connect(path)
    except sqlite3.OperationalError as exc:
        raise Unavailable(str(exc)) from None
    except sqlite3.DatabaseError:
        _remove(path)  # corrupt: the files are the truth, build it again
        try:
            db = _connect(path)
        except sqlite3.Error as exc:
            raise Unavailable(str(exc)) from None
    try:
        yield db
    except (sqlite3.OperationalError, OSError) as exc:
        raise Unavailable(str(exc)) from None
    except sqlite3.DatabaseError:
        _remove(path)  # found corrupt while in use: the next read rebuilds it
        raise Unavailable(f"{path} was corrupt and is rebuilt") from None
    finally:
        db.close()


def _connect(path: Path) -> sqlite3.Connection:
    try:
        with contextlib.suppress(FileExistsError):
            path.parent.mkdir(mode=DIR_MODE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
    except OSError as exc:
        raise sqlite3.OperationalError(f"cannot open {path}: {exc.strerror}") from None
    db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=True)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # a cache: losing the last commits costs a re-read
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            with _writing(db):
                _create_tables(db)
    except BaseException:
        db.close()
        raise
    return db


def _create_tables(db: sqlite3.Connection) -> None:
    """The tables of this version, replacing any others (unless another process just made them)."""
    if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        db.execute(f'DROP TABLE "{name}"')
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


@contextlib.contextmanager
def _writing(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once so that the files read inside it are the newest."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if db.in_transaction:
        db.execute("COMMIT")


def _setting(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def _set(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))


# --- keeping it current ---


def _sync(db: sqlite3.Connection, root: Path) -> None:
    """Bring the rows up to date with the files, reading only what may have changed:
    the root's entries (when the root changed), the jobs not ended, and a turn of the sweep.
    Nothing is written when nothing changed, so a quiet store costs no commit."""
    now = time.time_ns()
    info = os.stat(root)
    changed = max(info.st_mtime_ns, info.st_ctime_ns)
    root_sig = _trusted(f"{info.st_ino}:{info.st_mtime_ns}:{info.st_ctime_ns}", changed, now)
    stored_sig = _setting(db, "root")
    if root_sig == _UNTRUSTED or stored_sig != root_sig:
        # Sets of plain strings, the name filter applied to the new names alone: at 100,000
        # jobs this listing is most of a read's cost.
        names = set(os.listdir(root))
        known = set((db.execute("SELECT group_concat(id, ' ') FROM jobs").fetchone()[0] or "").split())
        new = sorted(n for n in names - known if _JOB_ID.fullmatch(n))
        # A row is dropped only when its directory is gone now, not merely absent from an older listing.
        gone = sorted(i for i in known - names if not os.path.isdir(f"{root}/{i}"))
        for start in range(0, len(new), CHUNK):
            with _writing(db):
                _store_rows(db, root, new[start : start + CHUNK])
        if gone or stored_sig != root_sig:
            with _writing(db):
                _delete_rows(db, gone)
                _set(db, "root", root_sig)
    volatile = db.execute("SELECT id, meta_sig, state_sig FROM jobs WHERE volatile = 1").fetchall()
    swept = db.execute(
        "SELECT id, meta_sig, state_sig FROM jobs WHERE volatile = 0 AND id > ? ORDER BY id LIMIT ?",
        (_sweep_position(root), SWEEP_ROWS),
    ).fetchall()
    _save_sweep_position(root, swept[-1][0] if swept and len(swept) == SWEEP_ROWS else "")
    if changed := _changed(root, volatile + swept):
        with _writing(db):
            _store_rows(db, root, changed)


def _sweep_position(root: Path) -> str:
    """The last id the sweep checked (a file beside the index: writing it costs no commit)."""
    try:
        with open(index_path(root).parent / SWEEP_FILE, encoding="ascii") as f:
            position = f.read().strip()
    except (OSError, ValueError):
        return ""
    return position if _JOB_ID.fullmatch(position) else ""


def _save_sweep_position(root: Path, position: str) -> None:
    with contextlib.suppress(OSError):
        path = index_path(root).parent / SWEEP_FILE
        # Always 32 bytes, written over the last: no truncation, which costs more than the write.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            os.write(fd, position.ljust(32).encode())
        finally:
            os.close(fd)


def _recheck(db: sqlite3.Connection, root: Path, rows: list[tuple[Any, ...]]) -> bool:
    """Check a page's rows against their files (a running job's lost supervisor is noticed and
    recorded, as every read does); whether any row changed."""
    for row in rows:
        if row[6] == "running":
            with contextlib.suppress(OSError, ValueError, KeyError, JobError):
                JobDir(root, row[0]).observed_state()
    changed = _changed(root, [(r[0], r[12], r[13]) for r in rows])
    if changed:
        with _writing(db):
            _store_rows(db, root, changed)
    return bool(changed)


def _changed(root: Path, rows: list[tuple[str, str, str]]) -> list[str]:
    """The ids whose files' signatures are not the ones recorded (or never were trusted)."""
    now = time.time_ns()
    return [
        job_id
        for job_id, meta_sig, state_sig in rows
        if meta_sig == _UNTRUSTED
        or state_sig == _UNTRUSTED
        or _stat_sig(f"{root}/{job_id}/{fsio.META}", now) != meta_sig
        or _stat_sig(f"{root}/{job_id}/{fsio.STATE}", now) != state_sig
    ]


def _trusted(sig: str, mtime_ns: int, now_ns: int) -> str:
    return sig if mtime_ns < now_ns - SETTLE_NS else _UNTRUSTED


def _sig_of(info: os.stat_result, now_ns: int) -> str:
    changed = max(info.st_mtime_ns, info.st_ctime_ns)
    return _trusted(f"{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}", changed, now_ns)


def _stat_sig(path: str, now_ns: int) -> str:
    try:
        return _sig_of(os.stat(path), now_ns)
    except FileNotFoundError:
        return _MISSING
    except OSError:
        return _UNTRUSTED


def _read(path: str, now_ns: int) -> tuple[dict[str, Any] | None, str]:
    """The record and the signature of the very file read; None for a missing or unreadable one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, _MISSING
    except OSError:
        return None, _UNTRUSTED
    try:
        sig = _sig_of(os.fstat(fd), now_ns)
        with os.fdopen(os.dup(fd), encoding="utf-8") as f:
            value = fsio.loads(f.read())
    except (OSError, ValueError):
        return None, _UNTRUSTED
    finally:
        os.close(fd)
    return (value if isinstance(value, dict) else None), sig


def _store_rows(db: sqlite3.Connection, root: Path, job_ids: list[str]) -> None:
    """Read these jobs' files and write their rows (the caller holds the write transaction)."""
    now = time.time_ns()
    gone = []
    for job_id in job_ids:
        meta, meta_sig = _read(f"{root}/{job_id}/{fsio.META}", now)
        state, state_sig = _read(f"{root}/{job_id}/{fsio.STATE}", now)
        if meta_sig == _MISSING and not (root / job_id).is_dir():
            gone.append(job_id)
            continue
        row, tags = _row(job_id, meta, state)
        volatile = (
            not row["readable"] or row["state"] not in records.TERMINAL_STATES or _UNTRUSTED in (meta_sig, state_sig)
        )
        row.update(meta_sig=meta_sig, state_sig=state_sig, volatile=int(volatile))
        db.execute(_INSERT, row)
        db.execute("DELETE FROM tags WHERE id = ?", (job_id,))
        db.executemany("INSERT OR IGNORE INTO tags (tag, id) VALUES (?, ?)", [(t, job_id) for t in tags])
    _delete_rows(db, gone)


def _delete_rows(db: sqlite3.Connection, job_ids: list[str]) -> None:
    db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in job_ids])
    db.executemany("DELETE FROM tags WHERE id = ?", [(i,) for i in job_ids])


def _row(job_id: str, meta: dict[str, Any] | None, state: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """The row of a job's records; a record missing a field a listing shows makes the job unreadable."""
    try:
        if meta is None or state is None:
            raise KeyError("record")
        tags = meta["tags"]
        if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            raise TypeError("tags")
        row = {
            "readable": 1,
            "created_at": _text(meta["created_at"]),
            "created_ns": int(meta.get("created_ns", 0)),
            "cwd": _text(meta["cwd"]),
            "command": fsio.dumps(meta["command"], indent=None),
            "tags": fsio.dumps(tags, indent=None),
            "state": _text(records.status(state)),
            "exit_code": records.exit_code(state),
            "reason": state.get("reason"),
            "started_at": records.started_at(state),
            "finished_at": state.get("finished_at"),
            "updated_at": _text(state["updated_at"]),
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        empty = dict.fromkeys(("created_at", "cwd", "state", "updated_at"), "")
        return {"id": job_id, "readable": 0, "created_ns": 0, "command": "null", "tags": "[]", **empty}, []
    row["id"] = job_id
    return row, tags


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


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
            where.append(
                "EXISTS (SELECT 1 FROM tags t WHERE t.id = jobs.id AND (t.tag = ? OR (t.tag >= ? AND t.tag < ?)))"
            )
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
