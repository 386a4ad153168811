"""The root's listing as the index last saw it, so that a root that changed costs a ``listdir``
and a compare of two byte strings, not a set difference against every row.

``.index/listing`` holds a token line, then every name in the root, each followed by ``/`` (the
one byte no name can hold), in the order ``os.listdir`` gave them. That order is the directory's
own (a hash order, or creation order), so one job added or removed changes the listing in one
place: the names before it and after it compare equal as two blocks of bytes, and only the names
between are looked at.

The listing may be used only while its token is the one the index's settings hold. It stands for
"every job named here has a row", so every removal of a row changes that token (a job removed,
then restored under the same name, must be read again), and a new listing is saved only by a
sync whose token is still the one it started from.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..store import FILE_MODE
from ._db import index_path, set_setting, setting

LISTING_FILE = "listing"
SEPARATOR = b"/"
#: Bytes compared at once while looking for the first difference, which is then found by halving.
BLOCK = 65536
_TOKEN_KEY = "listing"


@dataclass(frozen=True)
class Seen:
    """The token the settings held when read, and the listing if the file carries that token."""

    token: str | None
    names: bytes | None


def _path(root: Path) -> Path:
    return index_path(root).parent / LISTING_FILE


def joined(names: list[bytes]) -> bytes:
    """The listing of these names, in this order."""
    return SEPARATOR.join(names) + SEPARATOR if names else b""


def load(db: sqlite3.Connection, root: Path) -> Seen:
    token = setting(db, _TOKEN_KEY)
    if token is None:
        return Seen(token, None)
    try:
        with open(_path(root), "rb") as f:
            if f.readline() != token.encode() + b"\n":
                return Seen(token, None)
            return Seen(token, f.read())
    except OSError:
        return Seen(token, None)


def still(db: sqlite3.Connection, seen: Seen) -> bool:
    """Whether no row was removed and no listing saved since ``seen`` was loaded (inside a write)."""
    return setting(db, _TOKEN_KEY) == seen.token


def save(db: sqlite3.Connection, root: Path, names: bytes) -> None:
    """Replace the listing (the caller holds the write transaction, and commits the token)."""
    token = secrets.token_hex(8)
    path = _path(root)
    tmp = path.with_name(LISTING_FILE + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(token.encode() + b"\n" + names)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        forget(db)
        return
    set_setting(db, _TOKEN_KEY, token)


def forget(db: sqlite3.Connection) -> None:
    """No saved listing may be used any more (a row was removed)."""
    set_setting(db, _TOKEN_KEY, secrets.token_hex(8))


def changes(old: bytes, new: bytes) -> tuple[set[bytes], set[bytes]]:
    """The names added and the names removed from listing ``old`` to listing ``new``.

    Exact whatever the orders; fast when they agree but for the changes, as a directory's do."""
    limit = min(len(old), len(new))
    head = old.rfind(SEPARATOR, 0, _agreeing(lambda i, j: old[i:j] == new[i:j], limit)) + 1
    back = _agreeing(lambda i, j: old[len(old) - j : len(old) - i] == new[len(new) - j : len(new) - i], limit - head)
    # The common end is taken from just after a separator inside it, so both middles are whole names.
    tail = len(new) - new.find(SEPARATOR, len(new) - back) - 1 if back else 0
    before = set(old[head : len(old) - tail].split(SEPARATOR)[:-1])
    after = set(new[head : len(new) - tail].split(SEPARATOR)[:-1])
    return after - before, before - after


def _agreeing(same: Callable[[int, int], bool], limit: int) -> int:
    """How many bytes (at most ``limit``) agree, given ``same(i, j)``: whether bytes i to j do."""
    start = 0
    while start < limit:
        end = min(start + BLOCK, limit)
        if not same(start, end):
            break
        start = end
    else:
        return limit
    while end - start > 1:  # bytes up to start agree, up to end do not
        middle = (start + end) // 2
        if same(start, middle):
            start = middle
        else:
            end = middle
    return start
