"""Following a job's logs for the first complete line that matches an ``until`` pattern.

Each check reads on from where the last one stopped, up to the last newline written: a line
still being written is matched once it is whole. Wake-ups come from inotify on the job's
directory (a write to either log modifies it), not from a polling period.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .inotify import Inotify
from .logsearch import CHUNK_BYTES, _Searcher, _shown, compile_pattern
from .payloads import LineMatch
from .store import JobDir

if TYPE_CHECKING:
    import regex

    from .inputs import Until


@dataclass
class _Place:
    """How far one log was read: its byte offset and the number of the line that starts there."""

    path: str
    stream: str
    offset: int = 0
    line_number: int = 1


class LineWatch:
    """The first line of ``until`` in one job's logs; call ``check`` after each wake-up of ``notify``."""

    def __init__(self, jd: JobDir, until: Until, pattern: regex.Pattern[str], notify: Inotify) -> None:
        self.job_id = jd.job_id
        self.notify = notify
        notify.watch(str(jd.path))
        streams = ("stdout", "stderr") if until.stream == "either" else (until.stream,)
        paths = {"stdout": jd.stdout_path, "stderr": jd.stderr_path}
        self.places = [_Place(paths[s], s) for s in streams]
        self.searcher = _Searcher(pattern, 0)
        self.matched: LineMatch | None = None

    def check(self) -> LineMatch | None:
        """The first matching complete line written so far (kept once found)."""
        for place in self.places:
            if self.matched is not None:
                break
            self.matched = self._scan(place)
        return self.matched

    def _scan(self, place: _Place) -> LineMatch | None:
        try:
            fd = os.open(place.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            while place.offset < size:
                data = os.pread(fd, min(CHUNK_BYTES, size - place.offset), place.offset)
                cut = data.rfind(b"\n")
                if cut < 0:
                    if len(data) < CHUNK_BYTES:
                        return None  # only a line still being written
                    cut = len(data) - 1  # a line longer than a chunk is searched in pieces
                data = data[: cut + 1]
                text = data.decode("utf-8", "surrogateescape")
                hit = self.searcher.next_line(text, 0)
                if hit is not None:
                    begin, end = hit
                    return LineMatch(
                        stream=place.stream,  # type: ignore[arg-type]
                        line=_shown(text[begin:end]),
                        line_number=place.line_number + text.count("\n", 0, begin),
                        offset=place.offset + len(text[:begin].encode("utf-8", "surrogateescape")),
                    )
                place.offset += len(data)
                place.line_number += data.count(b"\n")
            return None
        finally:
            os.close(fd)


def watches(jds: list[JobDir], until: Until | None, notify: Inotify) -> list[LineWatch | None]:
    """One LineWatch per job when ``until`` is given (one compiled pattern for all)."""
    if until is None:
        return [None] * len(jds)
    pattern = compile_pattern(until.pattern, until.match_type, ignore_case=False)
    return [LineWatch(jd, until, pattern, notify) for jd in jds]
