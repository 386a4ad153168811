"""Following a job's two logs into ``full.log``.

The command writes ``stdout.log`` and ``stderr.log`` itself; the supervisor reads what is new
in each and appends it to ``full.log`` as timestamped lines, handing complete lines on to
the trigger. A failed write is counted, never fatal: the bytes stay in the log they came from.
"""

from __future__ import annotations

import os
from _collections_abc import Callable  # collections.abc without importing collections

from . import fsio

_READ_CHUNK = 1 << 18
#: Most bytes copied per log between two looks at signals, so a flood of output never
#: delays recording the end or enforcing the timeout.
PUMP_BUDGET = 1 << 22
#: A line longer than this is written to full.log in pieces, so memory stays bounded.
_PARTIAL_LINE_CAP = 1 << 16


class LogFollower:
    """Copies new bytes of one log into ``full.log`` as timestamped lines."""

    def __init__(
        self,
        path: str,
        stream: str,
        full_fd: int,
        full_path: str,
        on_lines: Callable[[str, list[bytes], int, int], None],
        errors: fsio.WriteErrorTally,
    ) -> None:
        self._path = path
        self._fd = os.open(path, os.O_RDONLY)
        self.stream = stream
        self._label = stream.upper().encode()
        self._full_fd = full_fd
        self._full_path = full_path
        self._on_lines = on_lines
        self._errors = errors
        self._partial = b""
        # Where the next line handed on starts in the log: its byte offset and its number.
        self._offset = 0
        self._line_number = 1

    def pump(self, budget: int = PUMP_BUDGET) -> int:
        """Copy what is new, up to ``budget`` bytes; returns how many were copied."""
        total = 0
        while total < budget:
            try:
                data = os.read(self._fd, _READ_CHUNK)
            except OSError as exc:
                self._errors.note(fsio.describe(exc, self._path))
                break
            if not data:
                break
            total += len(data)
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            whole = True
            if len(self._partial) > _PARTIAL_LINE_CAP:
                lines.append(self._partial)
                self._partial = b""
                whole = False
            self._emit(lines, whole)
        return total

    def flush(self) -> None:
        while self.pump():
            pass
        if self._partial:
            self._emit([self._partial], whole=False)
            self._partial = b""

    def _emit(self, lines: list[bytes], whole: bool) -> None:
        """Copy ``lines`` to full.log and hand them on; ``whole``: the last one ended with a newline."""
        if not lines:
            return
        prefix = fsio.now_rfc3339().encode() + b" [" + self._label + b"] "
        out = prefix + (b"\n" + prefix).join(lines) + b"\n"
        view = memoryview(out)
        try:
            while view:
                view = view[os.write(self._full_fd, view) :]
        except OSError as exc:
            # The lines stay in stdout.log / stderr.log: only full.log's copy is short.
            self._errors.note(fsio.describe(exc, self._full_path), full_log_bytes=len(view))
        self._on_lines(self.stream, lines, self._offset, self._line_number)
        newlines = len(lines) if whole else len(lines) - 1
        self._offset += sum(map(len, lines)) + newlines
        self._line_number += newlines
