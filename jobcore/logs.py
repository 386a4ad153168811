"""Reading windows of a job's logs (the snapshot object of the payloads).

A tail reads at most ``max_bytes`` from the end of the file, so its cost does not grow
with the log; an offset read returns ``[offset, min(size, offset + max_bytes))``. Both keep
whole UTF-8 characters at the edges they choose (see docs/payloads.md), so pages read from
each range's end concatenate to the exact text.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .inputs import DEFAULT_MAX_BYTES
from .payloads import Snapshot


@dataclass(frozen=True)
class Window:
    text: str
    begin: int
    end: int
    size: int
    #: Something was left out: the start of a tail, or the rest after an offset window.
    truncated: bool


#: The longest UTF-8 character, in bytes.
_MAX_CHAR_BYTES = 4


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def _pending(data: bytes) -> int:
    """How many bytes at the end of ``data`` begin a UTF-8 character that is not complete yet."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    decoder.decode(data, final=False)
    return len(decoder.getstate()[0])


def _whole_chars(data: bytes, limit: int) -> bytes:
    """The first ``limit`` bytes of ``data`` less a character cut at their end, never none of them.

    ``data`` holds a few bytes past ``limit``: when the first character alone is longer than
    ``limit`` it is returned whole, so a pager always moves on. Bytes that cannot become a
    character (invalid, or cut by the end of the file) are returned, to be replaced.
    """
    window = data[:limit]
    if not 0 < _pending(window) < len(window):
        # Whole characters, or only the start of one: take the rest of it, as far as it goes.
        while len(window) < len(data) and _pending(window) == len(window):
            window = data[: len(window) + 1]
    pending = _pending(window)
    return window[:-pending] if 0 < pending < len(window) else window


def _read(path: str, window: Callable[[int], tuple[int, int]]) -> tuple[bytes, int, int]:
    """The bytes ``[begin, end)`` that ``window(size)`` picks, with ``begin`` and the size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return b"", 0, 0
    try:
        size = os.fstat(fd).st_size
        begin, end = window(size)
        return (os.pread(fd, end - begin, begin) if end > begin else b""), begin, size
    finally:
        os.close(fd)


def read_tail(path: str, tail_lines: int, max_bytes: int) -> Window:
    """The last ``tail_lines`` lines (0 = any number) within the last ``max_bytes`` bytes."""
    data, begin, size = _read(path, lambda size: (max(0, size - max_bytes), size))
    end = begin + len(data)
    if begin > 0:
        # Cut inside a character: start at the next one.
        skip = 0
        while skip < min(len(data), _MAX_CHAR_BYTES - 1) and _is_continuation(data[skip]):
            skip += 1
        data = data[skip:]
        begin += skip
    if tail_lines > 0 and data:
        # A last line without a newline counts as a line.
        cut = len(data) - 1 if data.endswith(b"\n") else len(data)
        for _ in range(tail_lines):
            cut = data.rfind(b"\n", 0, cut)
            if cut < 0:
                break
        if cut >= 0:
            data = data[cut + 1 :]
            begin = end - len(data)
    return Window(data.decode("utf-8", errors="replace"), begin, end, size, begin > 0)


def read_from(path: str, offset: int, max_bytes: int) -> Window:
    """The bytes from ``offset`` on, at most ``max_bytes`` of them, ending on a character boundary.

    A window too small for the character at ``offset`` holds that whole character instead.
    """
    reach = max_bytes + _MAX_CHAR_BYTES - 1
    data, begin, size = _read(path, lambda size: (min(offset, size), min(size, offset + reach)))
    data = _whole_chars(data, max_bytes) if max_bytes > 0 else b""
    end = begin + len(data)
    return Window(data.decode("utf-8", errors="replace"), begin, end, size, end < size)


def read_head(path: str, head_lines: int, max_bytes: int) -> str:
    """The first ``head_lines`` lines within the first ``max_bytes`` bytes."""
    text = read_from(path, 0, max_bytes).text
    cut = -1
    for _ in range(head_lines):
        cut = text.find("\n", cut + 1)
        if cut < 0:
            return text
    return text[: cut + 1]


def snapshot(
    stdout_path: str,
    stderr_path: str,
    *,
    tail_lines: int = 50,
    max_bytes: int = DEFAULT_MAX_BYTES,
    stdout_offset: int | None = None,
    stderr_offset: int | None = None,
    head_lines: int = 0,
    limits: Mapping[str, int] | None = None,
) -> Snapshot:
    """Both logs' windows; ``limits`` lowers the byte limit of some (keys as the Snapshot's text fields)."""
    limits = limits or {}

    def window(path: str, offset: int | None, name: str) -> Window:
        limit = min(max_bytes, limits.get(name, max_bytes))
        if offset is None:
            return read_tail(path, tail_lines, limit)
        return read_from(path, offset, limit)

    def head(path: str, name: str) -> str | None:
        if head_lines <= 0:
            return None
        return read_head(path, head_lines, min(max_bytes, limits.get(name, max_bytes)))

    out = window(stdout_path, stdout_offset, "stdout_tail")
    err = window(stderr_path, stderr_offset, "stderr_tail")
    return Snapshot(
        stdout_tail=out.text,
        stderr_tail=err.text,
        truncated=out.truncated or err.truncated,
        stdout_observed_bytes=out.size,
        stderr_observed_bytes=err.size,
        stdout_included_bytes=out.end - out.begin,
        stderr_included_bytes=err.end - err.begin,
        stdout_range=(out.begin, out.end),
        stderr_range=(err.begin, err.end),
        stdout_head=head(stdout_path, "stdout_head"),
        stderr_head=head(stderr_path, "stderr_head"),
    )
