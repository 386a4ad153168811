"""Completion events and output triggers, delivered by the supervisor (issue 4).

Standard library only (the supervisor imports it by file path). Sinks never hold a job
back: the end is in ``state.json`` before any sink runs, notify commands run as tracked
children with a time limit, and trigger deliveries queue in order, so a slow or failing
sink delays only the deliveries behind it and every outcome is recorded.

Neither does a trigger's pattern: lines wait in a queue and are matched a slice of CPU at
a time between the supervisor's other duties, and a pattern that takes too long on one
line, or cannot keep up with the output, is disabled for the job (see ``docs/records.md``).
"""

from __future__ import annotations

import _signal
import os
import time
from _collections_abc import Callable  # collections.abc without importing collections

from . import fsio

COMMAND_TIME_LIMIT_S = 30.0
#: ``snapshot`` and ``wait`` carry the last matched line: at most this many characters of it.
LAST_LINE_CHARS = 4096
#: Trigger events waiting for their notify command beyond this are recorded at once as not
#: delivered. Events are recorded in notification_events.ndjson as their deliveries end, so
#: with a notify command ``seq`` (the match's number) is the order of the lines matched.
MAX_QUEUED = 1000
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


def _result(sink: str, target: str, error: str | None) -> dict:
    result = {"sink": sink, "target": target, "ok": error is None, "at": fsio.now_rfc3339()}
    if error is not None:
        result["error"] = error
    return result


def _without_results(event: dict) -> dict:
    return {k: v for k, v in event.items() if k != "delivery_results"}


class _Runaway(Exception):
    """Raised by the CPU tick handler into a match that has run too long."""


def append_line(path: str, event: dict) -> str | None:
    """Append ``event`` as one JSON line (a single write, so concurrent appenders never interleave)."""
    try:
        # O_NONBLOCK: a FIFO nobody reads is an error here, not a supervisor stuck in open().
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
        try:
            os.write(fd, (fsio.dumps(event, indent=None) + "\n").encode())
        finally:
            os.close(fd)
    except OSError as exc:
        return f"{exc.strerror}: {path}"
    except ValueError as exc:
        return f"{exc}: {path!r}"
    return None


class _Pending:
    """One event on its way: its file deliveries done, its notify command still to run."""

    def __init__(self, event: dict, command: str | None, done: Callable[[dict], None]) -> None:
        self.event = event
        self.command = command
        self.done = done  # called with the event once every delivery has a result
        self.pid: int | None = None
        self.deadline = 0.0
        self.timed_out = False
        self.stdin_path = ""


class Notifier:
    def __init__(self, job_dir: str, meta: dict, errors: fsio.WriteErrors) -> None:
        self.job_dir = job_dir
        self.meta = meta
        self.errors = errors
        #: The job's environment, which notify commands get too (set once the job is spawned).
        self.env: dict[str, str] = {}
        self._finished_event: dict | None = None
        self.wrapper = list(meta.get("shell_wrapper") or ["sh", "-c"])
        notification = meta.get("notification") or {}
        self.notify_command: str | None = notification.get("notify_command")
        self.notify_file: str | None = notification.get("notify_file")
        self.trigger: dict | None = notification.get("on_output_match")
        self._regex = None
        if self.trigger and self.trigger.get("match_type") == "regex":
            import re  # only for regex triggers: it costs every other launch ~3 ms

            self._regex = re.compile(self.trigger["pattern"])
        self.matched = 0
        self.undelivered = 0
        self.last_line: str | None = None
        #: Why the trigger was turned off for this job, once it was.
        self.disabled: str | None = None
        #: The counters changed since ``triggers.json`` was last written.
        self.counters_changed = False
        self._counters_failed = False
        self._finished: _Pending | None = None
        self._queue: list[_Pending] = []
        self._serial = 0
        # Lines waiting to be matched: (stream, lines) batches, the head read from _head on.
        self._lines: list[tuple[str, list[bytes]]] = []
        self._head = 0
        self._queued = 0
        # Read by the tick handler: the line being matched (0: none), the last one it saw.
        self._current = 0
        self._line_serial = 0
        self._ticked = 0
        self._same_ticks = 0
        self._ticks = 0
        self._behind_ticks = 0
        if self.trigger:
            _signal.signal(_signal.SIGPROF, self._on_tick)

    def _path(self, name: str) -> str:
        return os.path.join(self.job_dir, name)

    def _base_event(self, event_type: str) -> dict:
        return {
            "schema_version": "0.1",
            "event_type": event_type,
            "job_id": self.meta["job"]["id"],
            "command": self.meta["command"],
            "cwd": self.meta["cwd"],
            "stdout_log_path": self._path(fsio.STDOUT),
            "stderr_log_path": self._path(fsio.STDERR),
            "full_log_path": self._path(fsio.FULL),
        }

    # --- job.finished -------------------------------------------------------------------

    def record_finished(self, state: dict) -> None:
        """Build the ``job.finished`` event from the end about to be recorded and write it to
        ``completion_event.json`` first: whoever sees the end in ``state.json`` finds it."""
        event = self._base_event("job.finished")
        event.update(
            state=state["job"]["status"],
            started_at=state["job"].get("started_at"),
            finished_at=state.get("finished_at"),
            duration_ms=state["result"].get("duration_ms"),
        )
        for key, value in (
            ("exit_code", state["result"].get("exit_code")),
            ("signal", state["result"].get("signal")),
            ("reason", state.get("reason")),
        ):
            if value is not None:
                event[key] = value
        event["delivery_results"] = []
        self._write_event(self._path(fsio.COMPLETION_EVENT), event)
        self._finished_event = event

    def _write_event(self, path: str, event: dict) -> None:
        try:
            fsio.write_json_atomic(path, event)
        except OSError as exc:
            self.errors.note(fsio.describe(exc, path), event=True)

    def deliver_finished(self) -> None:
        """Deliver the event to its sinks, recording each result in ``completion_event.json``."""
        event = self._finished_event
        if event is None:
            return
        path = self._path(fsio.COMPLETION_EVENT)
        if self.notify_file:
            error = append_line(self.notify_file, _without_results(event))
            event["delivery_results"].append(_result("file", self.notify_file, error))
            self._write_event(path, event)
        if self.notify_command:
            pending = _Pending(event, self.notify_command, lambda ev: self._write_event(path, ev))
            self._finished = pending
            if (error := self._spawn(pending, event_path=path)) is not None:
                self._complete(pending, error)

    # --- job.output.matched -------------------------------------------------------------

    def watches(self, stream: str) -> bool:
        """True while lines of ``stream`` are to be matched."""
        trigger = self.trigger
        return bool(trigger) and self.disabled is None and trigger.get("stream", "either") in ("either", stream)

    def room(self) -> int:
        """Bytes the logs may hand over before matching catches up."""
        return max(0, QUEUE_HIGH_WATER - self._queued)

    def on_lines(self, stream: str, lines: list[bytes]) -> None:
        """Queue complete lines for matching (:meth:`match_pending` does it)."""
        if self.watches(stream):
            self._lines.append((stream, lines))
            self._queued += sum(map(len, lines)) + _LINE_ALLOWANCE * len(lines)

    def match_pending(self) -> None:
        """Match queued lines for up to a turn's CPU time and deliver what matched.

        A CPU-time timer ticks while we match; its handler counts the turn's ticks and
        raises into a match still on the same line after the line limit (``re`` looks at
        signals while it runs), so no pattern holds the supervisor longer than that.
        """
        if not self._lines:
            self._behind_ticks = 0
            return
        self._ticks = 0
        found: list[tuple[str, str]] = []
        runaway = False
        _signal.setitimer(_signal.ITIMER_PROF, _TICK_S, _TICK_S)
        try:
            self._match_turn(found)
        except _Runaway:
            runaway = True
        finally:
            _signal.setitimer(_signal.ITIMER_PROF, 0, 0)
            self._current = 0
        for stream, line in found:
            self._on_match(stream, line)
        if runaway:
            self._disable(LINE_LIMIT_REASON)
        elif self._lines:
            self._behind_ticks += self._ticks
            if self._behind_ticks >= _BEHIND_TICKS:
                self._disable(BEHIND_REASON)
        else:
            self._behind_ticks = 0
        self._advance_queue()

    def _match_turn(self, found: list[tuple[str, str]]) -> None:
        search = self._regex.search if self._regex is not None else None
        pattern = self.trigger["pattern"] if self.trigger else ""
        serial = self._line_serial
        while self._lines and self._ticks < _TURN_TICKS:
            stream, lines = self._lines[0]
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
                    found.append((stream, line))
            self._line_serial = serial
            self._queued -= sum(map(len, lines[start:i])) + _LINE_ALLOWANCE * (i - start)
            if i < len(lines):
                self._head = i
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

    def _on_match(self, stream: str, line: str) -> None:
        trigger = self.trigger or {}
        self.matched += 1
        self.last_line = line
        self.counters_changed = True
        event = self._base_event("job.output.matched")
        event.update(
            seq=self.matched,
            pattern=trigger["pattern"],
            match_type=trigger.get("match_type", "contains"),
            stream=stream,
            line=line,
            delivery_results=[],
        )
        if trigger.get("notify_file"):
            error = append_line(trigger["notify_file"], _without_results(event))
            event["delivery_results"].append(_result("file", trigger["notify_file"], error))
        command = trigger.get("notify_command")
        if command and len(self._queue) >= MAX_QUEUED:
            # Memory stays bounded: recorded now, as not delivered, ahead of the queued ones.
            self.undelivered += 1
            event["delivery_results"].append(
                _result("command", command, f"not delivered: {MAX_QUEUED} deliveries already queued")
            )
            self._record_trigger_event(event)
            return
        self._queue.append(_Pending(event, command, self._record_trigger_event))

    def _disable(self, reason: str) -> None:
        """No more matching for this job; the reason goes to the counters and, in order
        after the events before it, to ``notification_events.ndjson``."""
        trigger = self.trigger or {}
        self.disabled = reason
        self.counters_changed = True
        self._lines.clear()
        self._head = self._queued = self._behind_ticks = 0
        event = self._base_event("job.trigger.disabled")
        event.update(
            pattern=trigger["pattern"],
            match_type=trigger.get("match_type", "contains"),
            reason=reason,
            matched=self.matched,
            at=fsio.now_rfc3339(),
        )
        self._queue.append(_Pending(event, None, self._record_trigger_event))

    def _record_trigger_event(self, event: dict) -> None:
        if (error := append_line(self._path(fsio.NOTIFICATION_EVENTS), event)) is not None:
            self.errors.note(error, event=True)

    def write_counters(self) -> None:
        """Bring ``triggers.json`` up to date (a failure is reported and tried again later)."""
        path = self._path(fsio.TRIGGERS)
        try:
            fsio.write_json_atomic(path, self.counters())
        except OSError as exc:
            # Counted once, however many turns it takes to land.
            self.errors.note(fsio.describe(exc, path), event=not self._counters_failed)
            self._counters_failed = True
            return
        self.counters_changed = self._counters_failed = False

    def _advance_queue(self) -> None:
        """Record finished events in order; start the head's command when it has one."""
        while self._queue:
            head = self._queue[0]
            if head.pid is not None:
                return
            if head.command is None:
                self._queue.pop(0)
                head.done(head.event)
                continue
            error = self._spawn(head, event_path=None)
            if error is None:
                return
            head.event["delivery_results"].append(_result("command", head.command, error))
            head.command = None

    def counters(self) -> dict:
        counters: dict = {"matched": self.matched, "undelivered": self.undelivered}
        if self.last_line is not None:
            counters["last_line"] = self.last_line[:LAST_LINE_CHARS]
        if self.disabled is not None:
            counters["disabled"] = self.disabled
        return counters

    # --- notify commands, as tracked children -------------------------------------------

    def _spawn(self, pending: _Pending, event_path: str | None) -> str | None:
        """Start ``pending``'s notify command with the event on stdin; the error if it cannot.

        The event goes through a file of its own (the one the command's stdin reads),
        which is also ``AGENT_JOBS_EVENT_PATH`` unless ``event_path`` names another.
        """
        self._serial += 1
        pending.stdin_path = self._path(f".event-{self._serial}.json")
        try:
            fsio.write_json_atomic(pending.stdin_path, _without_results(pending.event))
        except OSError as exc:
            self.errors.note(fsio.describe(exc, pending.stdin_path), event=True)
            return f"cannot write the event: {exc}"
        event_path = event_path or pending.stdin_path
        env = dict(self.env)
        env.update(
            AGENT_JOBS_JOB_ID=self.meta["job"]["id"],
            AGENT_JOBS_EVENT_TYPE=pending.event["event_type"],
            AGENT_JOBS_EVENT_PATH=event_path,
        )
        argv = [*self.wrapper, pending.command]
        try:
            stdin = os.open(pending.stdin_path, os.O_RDONLY)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                pending.pid = os.posix_spawnp(
                    argv[0],
                    argv,
                    env,
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, stdin, 0),
                        (os.POSIX_SPAWN_DUP2, devnull, 1),
                        (os.POSIX_SPAWN_DUP2, devnull, 2),
                    ],
                    setsid=True,
                    setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGCHLD, _signal.SIGUSR1),
                )
            finally:
                os.close(stdin)
                os.close(devnull)
        except (OSError, ValueError) as exc:
            return f"cannot run: {exc}"
        pending.deadline = time.monotonic() + COMMAND_TIME_LIMIT_S
        return None

    def _complete(self, pending: _Pending, error: str | None) -> None:
        try:
            os.unlink(pending.stdin_path)
        except OSError:
            pass
        pending.event["delivery_results"].append(_result("command", pending.command or "", error))
        pending.pid = None
        pending.command = None
        if pending is self._finished:
            self._finished = None
            pending.done(pending.event)
        else:
            self._advance_queue()

    def _running(self) -> list[_Pending]:
        return [p for p in (self._finished, *self._queue[:1]) if p is not None and p.pid is not None]

    def child_exited(self, pid: int, status: int) -> bool:
        """Record a notify command's outcome; False when ``pid`` is not one of ours."""
        for pending in self._running():
            if pending.pid == pid:
                code = os.waitstatus_to_exitcode(status)
                if pending.timed_out:
                    error = f"timed out after {COMMAND_TIME_LIMIT_S:g} s"
                elif code != 0:
                    error = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
                else:
                    error = None
                self._complete(pending, error)
                return True
        return False

    def next_deadline(self) -> float | None:
        deadlines = [p.deadline for p in self._running() if not p.timed_out]
        return min(deadlines) if deadlines else None

    def enforce_deadlines(self, now: float) -> None:
        for pending in self._running():
            if not pending.timed_out and now >= pending.deadline and pending.pid is not None:
                pending.timed_out = True
                try:
                    os.killpg(pending.pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass

    @property
    def lines_waiting(self) -> bool:
        """Lines are queued for matching."""
        return bool(self._lines)

    @property
    def busy(self) -> bool:
        """Lines left to match or deliveries left to finish."""
        return self._finished is not None or bool(self._queue) or bool(self._lines)
