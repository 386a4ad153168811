"""The root's listing as the index last saw it, so that a root that changed costs a ``listdir``
and a compare of two byte strings, not a set difference against every row.

``.index/listing`` holds a token line, then every name in the root between separators (``/``,
the one byte no name can hold), in the order ``os.listdir`` gave them. That order is the
directory's own (a hash order, or creation order), so a job added or removed changes the listing
in one place: the names between two changes compare equal as blocks of bytes, and only the names
at a change are looked at.

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
from pathlib import Path
from typing import NamedTuple

from ..store import FILE_MODE
from ._db import index_path, set_setting, setting

LISTING_FILE = "listing"
SEPARATOR = b"/"
#: Bytes compared at once while looking for the next difference, which is then found by halving.
BLOCK = 65536
#: How far ahead (in bytes) a name is looked for at a difference, to tell names added or removed
#: before it from one name replaced by another.
WINDOW = 65536
#: Differences walked one by one before the rest is compared as sets (listings in unrelated orders).
MAX_STEPS = 1000
_TOKEN_KEY = "listing"
#: The listing this process last read or saved (one store's): 3 MB not read again while its
#: token is still the one the settings hold (a listing never changes under the same token).
_KEPT: dict[str, Seen] = {}


class Seen(NamedTuple):
    """The token the settings held when read, and the listing if the file carries that token."""

    token: str | None
    names: bytes | None


def _path(root: Path) -> Path:
    return index_path(root).parent / LISTING_FILE


def joined(names: list[str]) -> bytes:
    """The listing of these names (as ``os.listdir`` gives them), in this order: each one between
    two separators."""
    # Joined as text, then encoded at once: bytes.join keeps a buffer view of every one of
    # 100,000 names and takes several times as long.
    return os.fsencode(f"/{'/'.join(names)}/") if names else SEPARATOR


def load(db: sqlite3.Connection, root: Path) -> Seen:
    token = setting(db, _TOKEN_KEY)
    if token is None:
        return Seen(token, None)
    if (kept := _KEPT.get(str(root))) is not None and kept.token == token:
        return kept
    try:
        with open(_path(root), "rb") as f:
            if f.readline() != token.encode() + b"\n":
                return Seen(token, None)
            names = f.read()
    except OSError:
        return Seen(token, None)
    # Cut short (a disk full, a crash before the rename reached the disk): names missing only
    # make the next read look at them again, but a name cut in two is no name.
    whole = names.startswith(SEPARATOR) and names.endswith(SEPARATOR)
    seen = Seen(token, names if whole else None)
    if whole:
        _keep(root, seen)
    return seen


def _keep(root: Path, seen: Seen) -> None:
    _KEPT.clear()
    _KEPT[str(root)] = seen


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
    _keep(root, Seen(token, names))  # if the write rolls back, no setting ever holds this token


def forget(db: sqlite3.Connection) -> None:
    """No saved listing may be used any more (a row was removed)."""
    set_setting(db, _TOKEN_KEY, secrets.token_hex(8))


def changes(old: bytes, new: bytes) -> tuple[set[bytes], set[bytes]]:
    """The names added and the names removed from listing ``old`` to listing ``new``.

    Exact whatever the orders (every name is either in a run of bytes both listings share, or
    set aside as added or removed); fast when the orders agree but for the changes, as a
    directory's do: the shared runs are compared in blocks, and each change costs a few finds."""
    added: list[bytes] = []
    removed: list[bytes] = []
    i = j = 0  # where old and new are, each at the separator before a name
    for _ in range(MAX_STEPS):
        shared = _agreeing(lambda a, b, i=i, j=j: old[i + a : i + b] == new[j + a : j + b], len(old) - i, len(new) - j)
        # Back to the last separator in the shared run, so both go on from the start of a name.
        step = old.rfind(SEPARATOR, i, i + shared) - i
        i, j = i + step, j + step
        if i == len(old) - 1 or j == len(new) - 1:
            break
        ours = old[i + 1 : old.index(SEPARATOR, i + 1)]
        theirs = new[j + 1 : new.index(SEPARATOR, j + 1)]
        if (at := new.find(SEPARATOR + ours + SEPARATOR, j, j + WINDOW)) > j:
            added += new[j + 1 : at].split(SEPARATOR)  # names added before one both have
            j = at
        elif (at := old.find(SEPARATOR + theirs + SEPARATOR, i, i + WINDOW)) > i:
            removed += old[i + 1 : at].split(SEPARATOR)  # names removed before one both have
            i = at
        else:
            removed.append(ours)
            added.append(theirs)
            i, j = i + len(ours) + 1, j + len(theirs) + 1
    added += _names_after(new, j)
    removed += _names_after(old, i)
    # A name set aside on both sides (moved, or its run not found) is in both listings.
    both = set(added) & set(removed)
    return set(added) - both, set(removed) - both


def _names_after(listing: bytes, at: int) -> list[bytes]:
    rest = listing[at + 1 : -1]
    return rest.split(SEPARATOR) if rest else []


def _agreeing(same: Callable[[int, int], bool], *lengths: int) -> int:
    """How many bytes agree (at most the shortest length), given ``same(a, b)``: whether bytes a to b do."""
    limit = min(lengths)
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
