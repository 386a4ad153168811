"""Linux inotify through ctypes: an fd that becomes readable when a watched file is written to."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

IN_MODIFY = 0x00000002
_IN_CLOEXEC = os.O_CLOEXEC
_IN_NONBLOCK = os.O_NONBLOCK

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


class Inotify:
    """One inotify instance: ``fd`` polls readable after a watched file was modified; ``drain`` resets it."""

    def __init__(self) -> None:
        self.fd = _check(_libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK), "inotify_init1")

    def watch(self, path: str, mask: int = IN_MODIFY) -> int:
        """Watch ``path`` for the events in ``mask``; the watch descriptor."""
        return _check(_libc.inotify_add_watch(self.fd, os.fsencode(path), mask), f"inotify_add_watch {path}")

    def drain(self) -> None:
        """Read the queued events away; what changed is found by reading the files again."""
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
