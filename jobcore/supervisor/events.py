"""Completion events and output triggers, delivered by the supervisor.

Standard library only (part of the supervisor's subpackage). Sinks never hold a job
back: the end is in ``state.json`` before any sink runs, notify commands run as tracked
children with a time limit, and trigger deliveries queue in order, so a slow or failing
sink delays only the deliveries behind it and every outcome is recorded. Neither does a
trigger's pattern: :mod:`.matcher` matches lines a slice of CPU at a time.
"""

from __future__ import annotations

import _signal
import os
import time
from _collections_abc import Callable  # collections.abc without importing collections

from . import fsio, records
from .matcher import QUEUE_HIGH_WATER, Matcher

COMMAND_TIME_LIMIT_S = 30.0
#: Trigger events waiting for their notify command beyond this are recorded at once as not
#: delivered. Events are recorded in notification_events.ndjson as their deliveries end, so
#: with a notify command ``seq`` (the match's number) is the order of the lines matched.
MAX_QUEUED = 1000


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

    def __init__(self, event: records.Event, command: str | None, done: Callable[[records.Event], None]) -> None:
        self.event = event
        self.command = command
        self.done = done  # called with the event once every delivery has a result
        self.pid: int | None = None
        self.deadline = 0.0
        self.timed_out = False
        self.stdin_path = ""


class Notifier:
    """One job's events: ``job.finished`` at its end and ``job.output.matched`` for trigger
    matches, each recorded and delivered to the notify file and notify command."""

    def __init__(self, job_dir: str, meta: records.MetaRecord, errors: fsio.WriteErrorTally) -> None:
        self.job_dir = job_dir
        self.meta = meta
        self.errors = errors
        #: The job's environment, which notify commands get too (set once the job is spawned).
        self.env: dict[str, str] = {}
        self._finished_event: records.FinishedEvent | None = None
        self.wrapper = records.wrapper(meta)
        notification = meta.get("notification") or {}
        self.notify_command: str | None = notification.get("notify_command")
        self.notify_file: str | None = notification.get("notify_file")
        self.trigger: records.TriggerSpec | None = notification.get("on_output_match")
        self._matcher = Matcher(self.trigger) if self.trigger else None
        self.matched = 0
        self.undelivered = 0
        self.last_line: str | None = None
        #: Where the last matched line starts in its log: (line number, byte offset).
        self.last_place: tuple[int, int] | None = None
        #: Why the trigger was turned off for this job, once it was.
        self.disabled: str | None = None
        #: The counters changed since ``triggers.json`` was last written.
        self.counters_changed = False
        self._counters_failed = False
        self._finished: _Pending | None = None
        self._queue: list[_Pending] = []
        self._serial = 0

    def _path(self, name: str) -> str:
        return f"{self.job_dir}/{name}"

    # --- job.finished -------------------------------------------------------------------

    def record_finished(self, state: records.StateRecord) -> None:
        """Build the ``job.finished`` event from the end about to be recorded and write it to
        ``completion_event.json`` first: whoever sees the end in ``state.json`` finds it."""
        event = records.finished_event(self.meta, self.job_dir, state)
        self._write_event(self._path(fsio.COMPLETION_EVENT), event)
        self._finished_event = event

    def _write_event(self, path: str, event: records.Event) -> None:
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
            error = append_line(self.notify_file, records.without_results(event))
            event["delivery_results"].append(records.delivery_result("file", self.notify_file, error))
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
        return self._matcher.room() if self._matcher is not None else QUEUE_HIGH_WATER

    def on_lines(self, stream: str, lines: list[bytes], offset: int, line_number: int) -> None:
        """Queue complete lines for matching (:meth:`match_pending` does it); the first starts at
        byte ``offset`` of its log and is line ``line_number`` there."""
        if self._matcher is not None and self.watches(stream):
            self._matcher.add(stream, lines, offset, line_number)

    def match_pending(self) -> None:
        """Match queued lines for up to a turn's CPU time and deliver what matched."""
        matcher = self._matcher
        if matcher is None or not matcher.lines_waiting:
            if matcher is not None:
                matcher.idle()
            return
        found, disable = matcher.turn()
        for stream, line, line_number, offset in found:
            self._on_match(stream, line, line_number, offset)
        if disable is not None:
            self._disable(disable)
        self._advance_queue()

    def _on_match(self, stream: str, line: str, line_number: int, offset: int) -> None:
        trigger = self.trigger
        assert trigger is not None  # lines are matched only for a trigger
        self.matched += 1
        self.last_line = line
        self.last_place = (line_number, offset)
        self.counters_changed = True
        event = records.trigger_event(self.meta, self.job_dir, self.matched, trigger, stream, line, line_number, offset)
        if trigger.get("notify_file"):
            error = append_line(trigger["notify_file"], records.without_results(event))
            event["delivery_results"].append(records.delivery_result("file", trigger["notify_file"], error))
        command = trigger.get("notify_command")
        if command and len(self._queue) >= MAX_QUEUED:
            # Memory stays bounded: recorded now, as not delivered, ahead of the queued ones.
            self.undelivered += 1
            event["delivery_results"].append(
                records.delivery_result("command", command, f"not delivered: {MAX_QUEUED} deliveries already queued")
            )
            self._record_trigger_event(event)
            return
        self._queue.append(_Pending(event, command, self._record_trigger_event))

    def _disable(self, reason: str) -> None:
        """No more matching for this job; the reason goes to the counters and, in order
        after the events before it, to ``notification_events.ndjson``."""
        trigger = self.trigger
        assert trigger is not None and self._matcher is not None  # only a trigger is disabled
        self.disabled = reason
        self.counters_changed = True
        self._matcher.clear()
        event = records.trigger_disabled_event(self.meta, self.job_dir, trigger, reason, self.matched)
        self._queue.append(_Pending(event, None, self._record_trigger_event))

    def _record_trigger_event(self, event: records.Event) -> None:
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
            head.event["delivery_results"].append(records.delivery_result("command", head.command, error))
            head.command = None

    def counters(self) -> records.TriggerCounters:
        return records.trigger_counters(self.matched, self.undelivered, self.last_line, self.disabled, self.last_place)

    # --- notify commands, as tracked children -------------------------------------------

    def _spawn(self, pending: _Pending, event_path: str | None) -> str | None:
        """Start ``pending``'s notify command with the event on stdin; the error if it cannot.

        The event goes through a file of its own (the one the command's stdin reads),
        which is also :data:`records.EVENT_PATH_VAR` unless ``event_path`` names another.
        """
        self._serial += 1
        pending.stdin_path = self._path(f".event-{self._serial}.json")
        try:
            fsio.write_json_atomic(pending.stdin_path, records.without_results(pending.event))
        except OSError as exc:
            self.errors.note(fsio.describe(exc, pending.stdin_path), event=True)
            return f"cannot write the event: {exc}"
        event_path = event_path or pending.stdin_path
        env = dict(self.env)
        env[records.MARKER_VAR] = records.meta_job_id(self.meta)
        env[records.SINK_VAR] = pending.event["event_type"]
        env[records.EVENT_PATH_VAR] = event_path
        argv = [*self.wrapper, pending.command]
        try:
            stdin = os.open(pending.stdin_path, os.O_RDONLY)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                # Found on the job's PATH: ours, in a forked supervisor, is the fork server's.
                pending.pid = os.posix_spawn(
                    fsio.find_program(argv[0], env),
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
        pending.event["delivery_results"].append(records.delivery_result("command", pending.command or "", error))
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
        return self._matcher is not None and self._matcher.lines_waiting

    @property
    def busy(self) -> bool:
        """Lines left to match or deliveries left to finish."""
        return self._finished is not None or bool(self._queue) or self.lines_waiting
