"""The names added to and removed from the root, told by the kernel (inotify) instead of found by
listing the root (100 ms at 100,000 jobs, the whole of a read after a job was added).

A process keeps one watch per store it reads more than once (a one-off ``agent-jobs ls`` pays for
no watch, nor for loading inotify). The kernel queues an event for every entry made,
removed or renamed in the root, by any process on this machine (a person, another server, a
restore), before the call that made the change returns. So once a read's rows covered every name
in the root after the watch was added (``covered``, for that index file's generation), the events
drained by each later read name every change since, and the root need not be listed again.
Nothing is left to timestamps: two changes within one clock tick are two events.

When the events cannot be complete the watch is dropped and the read lists the root as before:
the queue overflowed, the root was removed, moved or replaced, or it is on a filesystem where
another machine may change it unseen (NFS and the like: only the local filesystems below are
watched). See ``docs/store.md`` (section "The index").
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..inotify import Inotify

#: Whether roots are watched at all (tests turn it off to take the listing path).
WATCH_ROOTS = True
#: Filesystems whose every change is made through this machine's kernel, and so seen by inotify.
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs"})
#: Stores a process watches at once; the oldest watch is closed first.
MAX_WATCHES = 4

IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
_NAMES = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
#: Events after which the queue no longer tells every change of the root at this path.
_LOST = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_Q_OVERFLOW | IN_IGNORED
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


class Watch:
    """One root's watch: its inotify instance, the root it was added on, and whether the rows
    have covered every name in the root since it was added."""

    def __init__(self, root: Path) -> None:
        # Loaded here, not with the package: ctypes and finding libc cost a cold ``agent-jobs ls``.
        from ..inotify import Inotify

        self.inotify: Inotify = Inotify()
        try:
            self.inotify.watch(str(root), _NAMES | _LOST | IN_ONLYDIR)
            info = os.stat(root)
        except OSError:
            self.inotify.close()
            raise
        #: The directory watched: a root replaced since by another at the same path is not it.
        self.dir = (info.st_dev, info.st_ino)
        #: The generation of the index whose rows have covered every name in the root since the
        #: watch was added (None: none yet). An index rebuilt since has another, and is not covered.
        self.covered: str | None = None
        #: One drain-and-record at a time: events drained are gone from the queue.
        self.lock = threading.Lock()
        self.closed = False

    def changed(self) -> set[str] | None:
        """The names added or removed since the last call, or None when some may be missing."""
        names: set[str] = set()
        lost = False
        while True:
            try:
                data = os.read(self.inotify.fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(data):
                _, mask, _, size = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                offset = start + size
                if mask & _LOST:
                    lost = True
                elif size:
                    names.add(os.fsdecode(data[start:offset].split(b"\0", 1)[0]))
        return None if lost else names

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.inotify.close()


_WATCHES: dict[str, Watch] = {}
_WATCHES_LOCK = threading.Lock()
#: Roots found on a filesystem that is not watched, by the device they were on then.
_NOT_LOCAL: dict[str, int] = {}
#: Roots this process has read once: the next read watches them.
_READ_ONCE: set[str] = set()


def _after_fork_in_child() -> None:
    # The child's events would be drained from the parent's queue: it makes its own watches.
    for watch in _WATCHES.values():
        watch.close()
    _WATCHES.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def watching(root: Path) -> Watch | None:
    """The watch kept on ``root``, a new one, or None: on the first read of ``root`` in this process,
    or where a watch could not tell every change."""
    if not WATCH_ROOTS:
        return None
    with _WATCHES_LOCK:
        watch = _WATCHES.get(str(root))
    if watch is not None:
        return watch
    if str(root) not in _READ_ONCE:
        _READ_ONCE.add(str(root))
        return None
    try:
        dev = os.stat(root).st_dev
        if _NOT_LOCAL.get(str(root)) == dev:
            return None
        if _filesystem(dev) not in LOCAL_FILESYSTEMS:
            _NOT_LOCAL[str(root)] = dev
            return None
        watch = Watch(root)
    except OSError:
        return None  # no inotify instance left to this user, the root gone: list it
    with _WATCHES_LOCK:
        if (other := _WATCHES.get(str(root))) is not None:  # another thread's, made meanwhile
            watch.close()
            return other
        _WATCHES[str(root)] = watch
        oldest = [w for w in _WATCHES.values() if w is not watch][: max(0, len(_WATCHES) - MAX_WATCHES)]
        for path in [p for p, w in _WATCHES.items() if w in oldest]:
            del _WATCHES[path]
    for other in oldest:
        with other.lock:
            other.close()
    return watch


def drop(root: Path, watch: Watch) -> None:
    """Stop using ``watch`` (the caller holds its lock): the next read lists the root."""
    with _WATCHES_LOCK:
        if _WATCHES.get(str(root)) is watch:
            del _WATCHES[str(root)]
    watch.close()


def _filesystem(dev: int) -> str | None:
    """The type of the filesystem on device ``dev``, from its mount."""
    device = f"{os.major(dev)}:{os.minor(dev)}"
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            # id parent major:minor root mount-point options [optional fields] - type source ...
            fields = line.split()
            if len(fields) > 2 and fields[2] == device and "-" in fields:
                return fields[fields.index("-") + 1]
    return None
