"""One job's command and its record: spawning it, signalling it on a timeout or a kill
request, and keeping ``state.json`` saying where it stands (see :mod:`supervisor.main`, the
process that runs it).

A write that fails (disk full, a file-size limit) never ends supervision: what could not be
written is counted, reported in ``state.json`` as ``write_errors``, and the end is recorded
all the same (retried while the disk refuses it). See ``docs/records.md``.
"""

from __future__ import annotations

import _signal
import os
import time
from _collections_abc import Callable, Mapping  # collections.abc without importing collections

from . import fsio, procs, records

#: While the disk refuses the end record, it is tried again each turn for this long.
_END_RETRY_S = 60.0
#: A running job's record is rewritten with new write errors at most this often.
_ERRORS_REWRITE_S = 1.0
#: After signalling the group, the job's processes that left it are looked for this much
#: later, or at once if the root has ended: most jobs are gone by then and need no /proc scan.
_SWEEP_DELAY_S = 0.05
#: While the root still runs, the look waits for its end up to this long (once a tenth of a
#: second): on a busy machine the signal has not yet been acted on, and once the root ends,
#: what it left becomes our children, so nothing left means no /proc walk. A walk costs a
#: few milliseconds of CPU beside a thousand processes; a thousand kills at once made one
#: in four supervisors walk. A root that outlives the signal (it traps it) gets the walk then.
_SWEEP_WAIT_S = 1.0
_SWEEP_RETRY_S = 0.1
_TERMINATING = frozenset({_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT})
#: Signals whose disposition we change (or Python does); the command gets them at default.
_RESET_SIGNALS = (
    _signal.SIGPIPE,
    _signal.SIGXFSZ,
    _signal.SIGCHLD,
    _signal.SIGUSR1,
    _signal.SIGINT,
    _signal.SIGTERM,
    _signal.SIGHUP,
    _signal.SIGQUIT,
    _signal.SIGPROF,
)


def parse_env_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines, ``#`` comments and an ``export`` prefix allowed."""
    env = {}
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line.removeprefix("export ").lstrip()
            key, sep, value = line.partition("=")
            if not sep:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[key.strip()] = value
    return env


class Supervisor:
    """One job's command: spawns it, signals it on timeout or a kill request, and keeps
    ``state.json`` saying where it stands."""

    def __init__(self, job_dir: str, errors: fsio.WriteErrorTally, environ: Mapping[str, str]) -> None:
        self.job_dir = job_dir
        #: What the job inherits: the launcher's environment, as the request gave it (see :func:`main`).
        self.environ = environ
        self.errors = errors
        self.meta: records.MetaRecord = fsio.read_json(self._path(fsio.META))
        self.job_id = records.meta_job_id(self.meta)
        self.pid: int | None = None
        self.started_at = ""
        self.spawned_mono = 0.0
        self.ended = False
        self.reason: str | None = None
        self.timeout_at: float | None = None
        self.escalate_at: float | None = None
        #: When to signal, with ``sweep_signal``, the job's processes outside its group, and
        #: until when that waits for the root to end first (see :meth:`sweep_due`).
        self.sweep_at: float | None = None
        self.sweep_by = 0.0
        #: ``kill.sent`` to write, and when: only if the job outlives the signal that long.
        self.kill_sent: dict[str, object] | None = None
        self.kill_sent_at: float | None = None
        self.sweep_signal = 0
        self.kill_after_s = self.meta.get("kill_after_ms", 5000) / 1000
        self.env: dict[str, str] = {}
        #: Called once with the terminal state record before it is first written.
        self.before_end: Callable[[records.StateRecord], None] = lambda record: None
        # What state.json is to hold, and whether it (with the write errors known then) does.
        self._status = ""
        self._fields: dict[str, object] = {}
        self._written = True
        self._written_errors = errors.count
        self._errors_due = 0.0
        self._end_retry_until = 0.0

    def _path(self, name: str) -> str:
        # Not os.path.join: job_dir is absolute already, and each os.path function run in a
        # forked supervisor writes to pages it would otherwise share (refcounts of its code).
        return f"{self.job_dir}/{name}"

    def _record(self) -> records.StateRecord:
        return records.state_record(
            self.job_id,
            self._status,
            supervisor_pid=os.getpid(),
            started_at=self.started_at,
            write_errors=self.errors.as_record(),
            **self._fields,
        )

    def write_state(self, status: str, **fields: object) -> None:
        """Record ``status``; the terminal record is made durable, and the ``job.finished``
        event (``before_end``) is written first, so whoever sees the end finds it."""
        self._status, self._fields = status, fields
        if status in records.TERMINAL_STATES:
            self.before_end(self._record())
            self._end_retry_until = time.monotonic() + _END_RETRY_S
        self._written = False
        self._write()

    def _write(self) -> None:
        counted = self.errors.count
        path = self._path(fsio.STATE)
        try:
            fsio.write_json_atomic(path, self._record(), durable=self._status in records.TERMINAL_STATES)
        except OSError as exc:
            self.errors.last_error = fsio.describe(exc, path)
            return
        self._written = True
        self._written_errors = counted

    def sync_state(self, now: float) -> None:
        """Write the record again if it could not be written, or new write errors are to be told."""
        if not self._written:
            self._write()
        elif self._written_errors != self.errors.count and (self.ended or now >= self._errors_due):
            self._errors_due = now + _ERRORS_REWRITE_S
            self._write()

    @property
    def end_on_disk(self) -> bool:
        return self.ended and self._written

    @property
    def settled(self) -> bool:
        """The record on disk is final, or the disk has refused it for too long."""
        up_to_date = self._written and self._written_errors == self.errors.count
        return up_to_date or time.monotonic() >= self._end_retry_until

    def build_env(self) -> dict[str, str]:
        env = dict(self.environ) if self.meta.get("inherit_env", True) else {}
        # Inherited from a server started by a notify command, it would make the job look like one.
        env.pop(records.SINK_VAR, None)
        for path in self.meta.get("env_files", []):
            env.update(parse_env_file(path))
        try:
            env.update(fsio.read_json(self._path(fsio.ENV)))
        except FileNotFoundError:
            pass
        env[records.MARKER_VAR] = self.job_id
        return env

    def spawn(self) -> None:
        """Start the command and record it ``running``, or ``failed`` with ``exec_failed``
        when it cannot start."""
        argv = records.shell_argv(self.meta)
        self.started_at = fsio.now_rfc3339()
        fds: list[int] = []
        try:
            self.env = env = self.build_env()
            os.chdir(self.meta["cwd"])
            program = fsio.find_program(argv[0], env)
            stdin_path = self._path(fsio.STDIN) if self.meta.get("stdin_file") else os.devnull
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            fds.append(os.open(stdin_path, os.O_RDONLY))
            fds.append(os.open(self._path(fsio.STDOUT), flags, 0o600))
            fds.append(os.open(self._path(fsio.STDERR), flags, 0o600))
            self.spawned_mono = time.monotonic()
            self.pid = os.posix_spawn(
                program,
                argv,
                env,
                file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)],
                setsid=True,
                setsigdef=_RESET_SIGNALS,
                setsigmask=(),
            )
        except (OSError, ValueError) as exc:  # ValueError: an env file that is not UTF-8
            cause = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
            if isinstance(exc, OSError) and exc.filename is not None:
                cause = f"{cause}: {exc.filename}"
            self.ended = True
            self._sync_definition()
            self.write_state(
                "failed",
                finished_at=fsio.now_rfc3339(),
                duration_ms=0,
                reason=f"exec_failed: {cause}",
            )
            return
        finally:
            for fd in fds:
                os.close(fd)
        self._sync_definition()
        timeout_ms = self.meta.get("timeout_ms", 0)
        if timeout_ms:
            self.timeout_at = self.spawned_mono + timeout_ms / 1000
        self.write_state("running", pid=self.pid)

    def _sync_definition(self) -> None:
        """Make ``meta.json`` durable before the first state record, and so before the launch
        is acknowledged. Done after the spawn: the command starts without waiting for the
        disk, and the launcher returns only once the definition is on disk."""
        try:
            fsio.sync_definition(self.job_dir)
        except OSError as exc:
            self.errors.note(fsio.describe(exc, self._path(fsio.META)))

    def _kill_request(self) -> dict[str, str]:
        try:
            request = fsio.read_json(self._path(fsio.KILL_REQUEST))
        except (OSError, ValueError):
            return {}
        return request if isinstance(request, dict) else {}

    @staticmethod
    def _signum(name: object) -> int | None:
        return (int(getattr(_signal, name, 0)) or None) if isinstance(name, str) and name.startswith("SIG") else None

    def requested_kill(self) -> int | None:
        """The signal a ``kill`` call asked for (it writes ``kill.json`` before waking us)."""
        return self._signum(self._kill_request().get("signal"))

    def on_kill_request(self) -> None:
        """Signal the job as ``kill.json`` asks, arm the escalation, and say so in ``kill.sent``
        should the job outlive the signal by :data:`_SWEEP_DELAY_S` (see :meth:`acknowledge_kill`)."""
        request = self._kill_request()
        signum = self._signum(request.get("signal"))
        if signum is None:
            return
        self.signal_job(signum, _SWEEP_DELAY_S)
        self.kill_sent = {
            "signal": request["signal"],
            "requested_at": request.get("requested_at"),
            "sent_at": fsio.now_rfc3339(),
        }
        self.kill_sent_at = time.monotonic() + _SWEEP_DELAY_S
        if signum in _TERMINATING:
            self.escalate_at = time.monotonic() + self.kill_after_s

    def acknowledge_kill(self) -> None:
        """Write ``kill.sent`` for a job still running: the kill call, which reads it only when
        no end came within its grace, then trusts us to escalate. A job that ended needs none (its
        end record says ``killed``), and most end at once: no file is made for them."""
        sent, self.kill_sent, self.kill_sent_at = self.kill_sent, None, None
        if sent is None or self.ended:
            return
        try:
            fsio.write_json_atomic(self._path(fsio.KILL_SENT), sent)
        except OSError:
            pass  # unacknowledged, the kill call signals the job itself: nothing is lost

    def signal_job(self, signum: int, sweep_in: float) -> None:
        """Signal the job's process group at once (no member forked meanwhile escapes), and
        its processes that left the group ``sweep_in`` seconds later (see :meth:`sweep`)."""
        if not self.ended and self.pid is not None:
            # The root is not reaped yet, so its pid, the group's id, cannot have been reused.
            try:
                os.killpg(self.pid, signum)
            except ProcessLookupError:
                pass
        self.sweep_signal = signum
        self.sweep_at = time.monotonic() + sweep_in
        self.sweep_by = self.sweep_at + (_SWEEP_WAIT_S if sweep_in else 0.0)

    def sweep_due(self, now: float) -> bool:
        """Whether to walk /proc for the job's processes outside its group now (called when
        ``sweep_at`` has come and processes of ours are left): yes once the root has ended, or
        it has had ``_SWEEP_WAIT_S`` to act on the signal; else look again a little later."""
        if self.ended or now >= self.sweep_by:
            return True
        self.sweep_at = min(now + _SWEEP_RETRY_S, self.sweep_by)
        return False

    def sweep(self) -> None:
        """Signal our descendants outside the job's group, notify commands aside: as their
        subreaper we are an ancestor of every process the job left."""
        self.sweep_at = None
        for pid in procs.descendants(os.getpid(), outside_group=None if self.ended else self.pid):
            if not procs.is_notify_command(pid):
                procs.signal_all([pid], self.sweep_signal)

    def on_timeout(self) -> None:
        self.timeout_at = None
        self.reason = "timeout"
        self.signal_job(_signal.SIGTERM, _SWEEP_DELAY_S)
        self.escalate_at = time.monotonic() + self.kill_after_s

    def escalate(self) -> None:
        self.escalate_at = None
        self.signal_job(_signal.SIGKILL, 0)

    def on_command_end(self, status: int) -> None:
        self.ended = True
        self.timeout_at = None
        duration_ms = int((time.monotonic() - self.spawned_mono) * 1000)
        if self.reason is None and self.requested_kill() in _TERMINATING | {_signal.SIGKILL}:
            self.reason = "killed"
        fields: dict[str, object] = {
            "pid": self.pid,
            "duration_ms": duration_ms,
            "finished_at": fsio.now_rfc3339(),
            "reason": self.reason,
        }
        if os.WIFSIGNALED(status):
            self.write_state("killed", signal_name=procs.signal_name(os.WTERMSIG(status)), **fields)
        else:
            self.write_state("exited", exit_code=os.waitstatus_to_exitcode(status), **fields)
