"""Matching a job's output lines against its trigger, a slice of CPU at a time.

A trigger's pattern never holds the supervisor back: lines wait in a queue and are matched
between the supervisor's other duties, and a pattern that takes too long on one line, or
cannot keep up with the output, is reported so the trigger is disabled for the job (see
``docs/records.md``).
"""

from __future__ import annotations

import _signal

from . import records

#: CPU time matching one line may take before the trigger is disabled for the job.
LINE_LIMIT_S = 0.25
#: Matching CPU time per turn of the supervisor's loop; lines left wait for the next turn, so
#: the timeout, kill requests and the job's end are seen in between.
TURN_LIMIT_S = 0.1
#: Matching CPU time spent while never catching up with the output before the trigger is
#: disabled: events that late are no use, and the queue must not grow for ever.
BEHIND_LIMIT_S = 5.0
#: The logs wait while this much (bytes, plus an allowance per line) is queued for matching.
QUEUE_HIGH_WATER = 1 << 20
_LINE_ALLOWANCE = 64
#: How often CPU time is looked at while matching (an ``ITIMER_PROF`` tick, so a busy machine
#: does not count against a pattern).
_TICK_S = 0.05
_TURN_TICKS = round(TURN_LIMIT_S / _TICK_S)
_BEHIND_TICKS = round(BEHIND_LIMIT_S / _TICK_S)
#: A line seen at this many ticks in a row has run at least (n - 1) ticks.
_LINE_TICKS = round(LINE_LIMIT_S / _TICK_S) + 1
LINE_LIMIT_REASON = f"matching one line took over {LINE_LIMIT_S:g} s of CPU"
BEHIND_REASON = f"matching fell behind the output for over {BEHIND_LIMIT_S:g} s of CPU"


class _Runaway(Exception):
    """Raised by the CPU tick handler into a match that has run too long."""


class Matcher:
    """The queue of lines waiting for one trigger's pattern, and the matching of them."""

    def __init__(self, trigger: records.TriggerSpec) -> None:
        self.pattern = trigger["pattern"]
        self._regex = None
        if trigger.get("match_type") == "regex":
            import re  # only for regex triggers: it costs every other launch ~3 ms

            self._regex = re.compile(self.pattern)
        # Lines waiting to be matched: (stream, lines, offset, line number) batches, the head
        # read from _head on; offset and line number are those of the batch's next line.
        self._lines: list[tuple[str, list[bytes], int, int]] = []
        self._head = 0
        self._queued = 0
        # Read by the tick handler: the line being matched (0: none), the last one it saw.
        self._current = 0
        self._line_serial = 0
        self._ticked = 0
        self._same_ticks = 0
        self._ticks = 0
        self._behind_ticks = 0
        _signal.signal(_signal.SIGPROF, self._on_tick)

    def room(self) -> int:
        """Bytes the logs may hand over before matching catches up."""
        return max(0, QUEUE_HIGH_WATER - self._queued)

    def add(self, stream: str, lines: list[bytes], offset: int, line_number: int) -> None:
        self._lines.append((stream, lines, offset, line_number))
        self._queued += sum(map(len, lines)) + _LINE_ALLOWANCE * len(lines)

    def clear(self) -> None:
        self._lines.clear()
        self._head = self._queued = self._behind_ticks = 0

    @property
    def lines_waiting(self) -> bool:
        return bool(self._lines)

    def idle(self) -> None:
        """Nothing is queued: matching is not behind."""
        self._behind_ticks = 0

    def turn(self) -> tuple[list[tuple[str, str, int, int]], str | None]:
        """Match queued lines for up to a turn's CPU time: the (stream, line, line number,
        byte offset) of those that matched, and why the trigger is to be disabled, if it is.

        A CPU-time timer ticks while we match; its handler counts the turn's ticks and
        raises into a match still on the same line after the line limit (``re`` looks at
        signals while it runs), so no pattern holds the supervisor longer than that.
        """
        self._ticks = 0
        found: list[tuple[str, str, int, int]] = []
        runaway = False
        _signal.setitimer(_signal.ITIMER_PROF, _TICK_S, _TICK_S)
        try:
            self._match_turn(found)
        except _Runaway:
            runaway = True
        finally:
            _signal.setitimer(_signal.ITIMER_PROF, 0, 0)
            self._current = 0
        if runaway:
            return found, LINE_LIMIT_REASON
        if self._lines:
            self._behind_ticks += self._ticks
            if self._behind_ticks >= _BEHIND_TICKS:
                return found, BEHIND_REASON
        else:
            self._behind_ticks = 0
        return found, None

    def _match_turn(self, found: list[tuple[str, str, int, int]]) -> None:
        search = self._regex.search if self._regex is not None else None
        pattern = self.pattern
        serial = self._line_serial
        while self._lines and self._ticks < _TURN_TICKS:
            stream, lines, offset, number = self._lines[0]
            start = i = self._head
            while i < len(lines) and self._ticks < _TURN_TICKS:
                raw = lines[i]
                i += 1
                line = raw.decode("utf-8", "replace").rstrip("\r")
                serial += 1
                self._current = serial
                hit = search(line) if search is not None else pattern in line
                self._current = 0
                if hit:
                    found.append((stream, line, number, offset))
                offset += len(raw) + 1
                number += 1
            self._line_serial = serial
            self._queued -= sum(map(len, lines[start:i])) + _LINE_ALLOWANCE * (i - start)
            if i < len(lines):
                self._head = i
                self._lines[0] = (stream, lines, offset, number)
            else:
                self._lines.pop(0)  # few batches: each is up to a read's worth of lines
                self._head = 0

    def _on_tick(self, signum: int, frame: object) -> None:
        self._ticks += 1
        current = self._current
        if current == 0 or current != self._ticked:
            self._ticked = current
            self._same_ticks = 1
            return
        self._same_ticks += 1
        if self._same_ticks >= _LINE_TICKS:
            self._current = 0  # raise once: a tick before the handler's catch finds no line
            raise _Runaway
