"""The index's SQLite file: opening it (rebuilt when corrupt or of another schema) and keeping it
open between reads, its tables, its settings and its write transactions. Knows nothing of jobs'
files."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from ..store import DIR_MODE, FILE_MODE

#: The index lives in a directory of its own: SQLite creates and removes its ``-wal`` and
#: ``-shm`` files as connections come and go, which would change the root's mtime, the very
#: sign that tells a read whether jobs were added or removed.
INDEX_DIR = ".index"
INDEX_FILE = "index.sqlite3"
#: Bumped when the tables or what they mean change: an index of another version is rebuilt.
#: 2: removing a row must forget the saved listing (``_listing``), which version 1 did not know.
SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 30_000

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


class Unavailable(Exception):
    """The index cannot be used here (no root, not writable, locked too long): read the files."""


def index_path(root: Path) -> Path:
    return root / INDEX_DIR / INDEX_FILE


class _Open:
    """A connection this process keeps to one index file, and the file it was opened on."""

    def __init__(self, db: sqlite3.Connection, file: tuple[int, int, int, int] | None) -> None:
        self.db = db
        self.file = file
        #: One user at a time: a connection is not to be shared by threads at once.
        self.lock = threading.RLock()
        self.closed = False


#: Connections kept open between reads, the most recently opened last. Closing the last
#: connection to a WAL database checkpoints it and removes the ``-wal`` file, and the next write
#: creates it again: two ``fsync``s each time (15 ms on a slow disk), for a read that recorded one
#: new job.
_OPEN: dict[str, _Open] = {}
#: Stores a process keeps a connection to (a server has one; tests and scripts may use many).
MAX_OPEN = 4
_OPEN_LOCK = threading.Lock()
#: Connections a forked child inherited: never used nor closed there (SQLite's rule for a fork).
_INHERITED: list[_Open] = []


def _after_fork_in_child() -> None:
    _INHERITED.extend(_OPEN.values())
    _OPEN.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _file_of(path: Path) -> tuple[int, int, int, int] | None:
    """What tells the index file apart from one made, replaced or damaged since."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


@contextlib.contextmanager
def open_index(root: Path) -> Iterator[sqlite3.Connection]:
    """This process's connection to the index (opened, or rebuilt, as needed), for one use."""
    path = index_path(root)
    while True:
        kept = _connection(path)
        with kept.lock:
            if kept.closed:
                continue  # dropped by another thread meanwhile
            try:
                yield kept.db
            except (sqlite3.OperationalError, OSError) as exc:
                _drop(path, kept)
                raise Unavailable(str(exc)) from None
            except sqlite3.DatabaseError:
                _drop(path, kept)
                _remove(path)  # found corrupt while in use: the next read rebuilds it
                raise Unavailable(f"{path} was corrupt and is rebuilt") from None
            return


def _connection(path: Path) -> _Open:
    """The connection kept to the index file at ``path`` now, or a new one."""
    with _OPEN_LOCK:
        kept = _OPEN.get(str(path))
    # Another file than the one opened (the index deleted, rebuilt, damaged): open it again.
    # Its size and mtime change with checkpoints too, which only costs a reopen then.
    if kept is not None and kept.file == _file_of(path):
        return kept
    if kept is not None:
        with kept.lock:
            _drop(path, kept)
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
    kept = _Open(db, _file_of(path))
    with _OPEN_LOCK:
        _OPEN[str(path)] = kept
        oldest = [(p, k) for p, k in _OPEN.items() if k is not kept][: max(0, len(_OPEN) - MAX_OPEN)]
    for other_path, other in oldest:
        with other.lock:
            _drop(Path(other_path), other)
    return kept


def _drop(path: Path, kept: _Open) -> None:
    """Close a kept connection (the caller holds its lock) and forget it."""
    with _OPEN_LOCK:
        if _OPEN.get(str(path)) is kept:
            del _OPEN[str(path)]
    if not kept.closed:
        kept.closed = True
        kept.db.close()


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
    db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # a cache: losing the last commits costs a re-read
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            with writing(db):
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
def writing(db: sqlite3.Connection) -> Iterator[None]:
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


def setting(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def set_setting(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))
