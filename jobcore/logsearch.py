"""Finding lines in a log of any size: streamed in chunks, so memory stays bounded.

A line matches when the pattern matches within it (see docs/tools.md): candidates are found by
one search over a chunk of whole lines, and a candidate that runs past its line's end is checked
again on that line alone. Patterns run in the third-party ``regex`` module, which releases the
GIL while it matches and takes a ``timeout``: a pattern that backtracks for ever ends the call with
``pattern_timeout`` and never stalls the server's event loop or other calls.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import JobError

if TYPE_CHECKING:
    import regex

#: Bytes read per step. A line longer than this is searched in pieces of this size.
CHUNK_BYTES = 1 << 20
#: A line (match or context) is returned cut to this many characters.
LINE_MAX_CHARS = 1000
#: Longest time one search step may run before the pattern is taken for catastrophic.
PATTERN_TIMEOUT_S = 2.0


@dataclass
class Found:
    """A matching line, its context before and after, ``offset`` the byte offset of its start."""

    stream: str
    line_number: int
    offset: int
    line: str
    before: list[str]
    after: list[str] = field(default_factory=list)


@dataclass
class Scan:
    """What one log gave: its matches, where to go on from, and whether a match was left for later."""

    found: list[Found]
    next_offset: int
    more: bool
    scanned_bytes: int


def compile_pattern(pattern: str, match_type: str, ignore_case: bool) -> regex.Pattern[str]:
    import regex  # imported by the first search, not by every start of the engine (about 13 ms)

    source = pattern if match_type == "regex" else regex.escape(pattern)
    flags = regex.MULTILINE | (regex.IGNORECASE if ignore_case else 0)
    try:
        return regex.compile(source, flags)
    except regex.error as exc:
        raise JobError(
            "invalid_input", f"pattern: bad regex {pattern!r}: {exc}", details={"field": "pattern", "pattern": pattern}
        ) from None


def _shown(text: str) -> str:
    """A line as returned: its CR before the newline left out, invalid bytes replaced, cut to the cap."""
    text = text.removesuffix("\r")
    if len(text) > LINE_MAX_CHARS:
        text = text[:LINE_MAX_CHARS]
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def count_lines(fd: int, end: int) -> int:
    """Newlines in the first ``end`` bytes of the file, counted in chunks."""
    count = 0
    pos = 0
    while pos < end:
        data = os.pread(fd, min(CHUNK_BYTES * 4, end - pos), pos)
        if not data:
            break
        count += data.count(b"\n")
        pos += len(data)
    return count


class _Searcher:
    def __init__(self, pat: regex.Pattern[str], context_lines: int) -> None:
        self.pat = pat
        self.context = context_lines

    def _search(self, text: str, pos: int, endpos: int | None = None) -> regex.Match[str] | None:
        try:
            if endpos is None:
                return self.pat.search(text, pos, timeout=PATTERN_TIMEOUT_S)
            return self.pat.search(text, pos, endpos, timeout=PATTERN_TIMEOUT_S)
        except TimeoutError:
            raise JobError(
                "pattern_timeout",
                f"pattern {self.pat.pattern!r} ran longer than {PATTERN_TIMEOUT_S:g} s on one part of the log; "
                "simplify it (nested repeats such as (a+)+ backtrack without end)",
                details={"field": "pattern", "pattern": self.pat.pattern},
            ) from None

    def next_line(self, text: str, pos: int) -> tuple[int, int] | None:
        """``(start, end)`` of the first line at or after ``pos`` that matches, ``end`` its newline's index."""
        while pos <= len(text):
            m = self._search(text, pos)
            if m is None:
                return None
            start = text.rfind("\n", 0, m.start()) + 1
            if start == len(text):
                return None  # an empty match after the last newline: no line is there
            end = text.find("\n", m.start())
            end = len(text) if end < 0 else end
            if m.end() <= end or self._search(text, start, end) is not None:
                return start, end
            pos = end + 1
        return None

    def before(self, text: str, start: int, carry: deque[str]) -> list[str]:
        lines: list[str] = []
        cut = start - 1
        while len(lines) < self.context and cut >= 0:
            begin = text.rfind("\n", 0, cut) + 1
            lines.append(_shown(text[begin:cut]))
            cut = begin - 1
        if len(lines) < self.context and cut < 0:
            lines.extend(reversed(list(carry)[-(self.context - len(lines)) :]))
        return lines[::-1]

    def after(self, text: str, end: int, want: int) -> tuple[list[str], int]:
        """Up to ``want`` whole lines after index ``end`` (a newline), and how many were still wanted."""
        lines: list[str] = []
        pos = end + 1
        while len(lines) < want and pos < len(text):
            stop = text.find("\n", pos)
            if stop < 0:
                stop = len(text)
            lines.append(_shown(text[pos:stop]))
            pos = stop + 1
        return lines, want - len(lines)

    def tail(self, text: str, carry: deque[str]) -> None:
        """Keep the chunk's last lines, the context before a match at the start of the next chunk."""
        lines: list[str] = []
        cut = len(text) - 1 if text.endswith("\n") else len(text)
        while len(lines) < self.context and cut >= 0:
            begin = text.rfind("\n", 0, cut) + 1
            lines.append(_shown(text[begin:cut]))
            cut = begin - 1
        for line in reversed(lines):
            carry.append(line)


def scan(path: str, stream: str, start: int, pat: regex.Pattern[str], context_lines: int, room: int) -> Scan:
    """The first ``room`` matching lines of the log from byte ``start`` on; ``more`` when one more was found.

    ``next_offset`` is where to search from next: the start of the line left over, or the
    end of what was read. A line cut by the chunk's end is searched in pieces only when it
    alone is longer than a chunk.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return Scan([], start, False, 0)
    try:
        size = os.fstat(fd).st_size
        start = min(start, size)
        line_number = 1 + count_lines(fd, start)
        searcher = _Searcher(pat, context_lines)
        carry: deque[str] = deque(maxlen=max(context_lines, 1))
        found: list[Found] = []
        pending: list[Found] = []
        pos = start
        while pos < size:
            data = os.pread(fd, min(CHUNK_BYTES, size - pos), pos)
            if not data:
                break
            if pos + len(data) < size and (cut := data.rfind(b"\n")) >= 0:
                data = data[: cut + 1]
            text = data.decode("utf-8", "surrogateescape")
            for waiting in pending:
                lines, _ = searcher.after(text, -1, context_lines - len(waiting.after))
                waiting.after.extend(lines)
            pending = [f for f in pending if len(f.after) < context_lines]
            at_text, at_byte, at_line = 0, pos, line_number
            cursor = 0
            while (hit := searcher.next_line(text, cursor)) is not None:
                begin, end = hit
                at_line += text.count("\n", at_text, begin)
                at_byte += len(text[at_text:begin].encode("utf-8", "surrogateescape"))
                at_text = begin
                if len(found) == room:
                    return Scan(found, at_byte, True, at_byte - start)
                after, wanted = searcher.after(text, end, context_lines)
                hit_found = Found(
                    stream, at_line, at_byte, _shown(text[begin:end]), searcher.before(text, begin, carry), after
                )
                found.append(hit_found)
                if wanted:
                    pending.append(hit_found)
                cursor = end + 1
            if context_lines:
                searcher.tail(text, carry)
            line_number += data.count(b"\n")
            pos += len(data)
        return Scan(found, pos, False, pos - start)
    finally:
        os.close(fd)
