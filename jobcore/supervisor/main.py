"""The per-job supervisor: started detached, runs one command and writes its record.

Imported as ``supervisor.main`` under ``python -S -E`` and run as ``main(job_dir)``, with
fd 2 on the launcher's acknowledgement pipe (see :mod:`jobcore.launch`). Standard library
only, and never the engine's package: it starts once per job and stays resident for the
job's life, so start-up time and memory are what it is judged by.

The command gets ``stdout.log`` and ``stderr.log`` as its own stdout and stderr, so its
output reaches disk without passing through us: nothing is lost if this process dies.
We follow those files to build ``full.log``, enforce the timeout, record the end at the
root process's exit, and reap every descendant (we are their child subreaper).

A write that fails (disk full, a file-size limit) never ends supervision: what could not be
written is counted, reported in ``state.json`` as ``write_errors``, and the end is recorded
all the same (retried while the disk refuses it). See ``docs/records.md``.
"""

from __future__ import annotations

import _signal
import ctypes
import os
import select
import time
from _collections_abc import Callable, Mapping  # collections.abc without importing collections

from . import events, follow, fsio, procs, records

_PR_SET_CHILD_SUBREAPER = 36
#: Looked up once, at import: a forked supervisor then only calls it (finding it costs pages).
prctl = ctypes.CDLL(None, use_errno=True).prctl
_FOLLOW_MIN_S = 0.005
#: The longest wait between two looks at a quiet job's logs (the command writes them itself:
#: no event tells us). Each look costs ~0.2 ms of CPU, so 1,000 quiet jobs take a quarter of a
#: core at this period; a line after a quiet spell reaches ``full.log`` within it.
_FOLLOW_MAX_S = 1.0
#: While the disk refuses the end record, it is tried again each turn for this long.
_END_RETRY_S = 60.0
#: A running job's record is rewritten with new write errors at most this often.
_ERRORS_REWRITE_S = 1.0
#: After signalling the group, the job's processes that left it are looked for this much
#: later, or at once if the root has ended: most jobs are gone by then and need no /proc scan.
_SWEEP_DELAY_S = 0.05
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
        #: When to signal, with ``sweep_signal``, the job's processes outside its group.
        self.sweep_at: float | None = None
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
        timeout_ms = self.meta.get("timeout_ms", 0)
        if timeout_ms:
            self.timeout_at = self.spawned_mono + timeout_ms / 1000
        self.write_state("running", pid=self.pid)

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


def release_subreaper() -> None:
    """Stop being the subreaper :func:`main` made this process (for a process that carries on)."""
    prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _reap(sup: Supervisor, notifier: events.Notifier, reap_all: bool) -> bool:
    """Reap every exited child (or, unless ``reap_all``, the command only); returns False once
    we have none left to wait for."""
    while True:
        if not reap_all and (sup.ended or sup.pid is None):
            return False
        try:
            pid, status = os.waitpid(-1 if reap_all else sup.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        if pid == sup.pid and not sup.ended:
            sup.on_command_end(status)
        else:
            notifier.child_exited(pid, status)  # else a reaped orphan of the job


def _acknowledge() -> None:
    """Tell the launcher we own the job, then detach fd 2 from its pipe."""
    os.write(2, b"ACK")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def main(job_dir: str, environ: Mapping[str, str] | None = None, *, reap_all: bool = True) -> int:
    """Supervise the job in ``job_dir`` until its end is on disk and every descendant is reaped.

    ``environ`` is what the job inherits, ours when None. The fork server passes the request's
    rather than put it in ``os.environ``, which costs every forked supervisor pages and ~1 ms.
    ``reap_all=False`` is for a process with children of its own (the fork server's warm-up):
    only the command is waited for and reaped.
    """
    job_dir = os.path.abspath(job_dir)
    try:
        os.close(os.open(f"{job_dir}/{fsio.ACK}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return 0  # the launcher gave up on us and marked the launch failed: run nothing
    prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # Held open while the job runs; waiters see POLLHUP on their read end when we close it.
    wake_fd = os.open(f"{job_dir}/{fsio.WAKE_FIFO}", os.O_RDWR | os.O_NONBLOCK)
    sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    for signum in (_signal.SIGCHLD, _signal.SIGUSR1):
        _signal.signal(signum, lambda *_: None)
    _signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)

    errors = fsio.WriteErrorTally()
    sup = Supervisor(job_dir, errors, os.environ if environ is None else environ)
    notifier = events.Notifier(job_dir, sup.meta, errors)
    sup.before_end = notifier.record_finished
    sup.spawn()
    notifier.env = sup.env
    _acknowledge()
    woken = False

    def wake_on_end() -> None:
        # Once the end (and its event) is on disk: wake the waiters before any sink can take time.
        nonlocal woken
        if sup.end_on_disk and not woken:
            woken = True
            os.close(wake_fd)
            notifier.deliver_finished()

    wake_on_end()
    full_path = f"{job_dir}/{fsio.FULL}"
    full_fd = os.open(full_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    followers = [
        follow.LogFollower(f"{job_dir}/{name}", stream, full_fd, full_path, notifier.on_lines, errors)
        for name, stream in ((fsio.STDOUT, "stdout"), (fsio.STDERR, "stderr"))
    ]
    poller = select.poll()
    poller.register(sig_r, select.POLLIN)
    follow_s = _FOLLOW_MIN_S
    has_children = not sup.ended
    flushed = False
    while True:
        now = time.monotonic()
        if sup.timeout_at is not None and now >= sup.timeout_at:
            sup.on_timeout()
        if sup.escalate_at is not None and now >= sup.escalate_at:
            sup.escalate()
        if sup.sweep_at is not None and (now >= sup.sweep_at or sup.ended):
            # Reaped first: on a busy machine the signal has often ended every process of the
            # job by the time we run again, and then nothing is left to look for in /proc.
            has_children = _reap(sup, notifier, reap_all)
            if has_children:
                sup.sweep()
            else:
                sup.sweep_at = None  # the job left nothing behind: no /proc scan
        if sup.kill_sent_at is not None and (now >= sup.kill_sent_at or sup.ended):
            sup.acknowledge_kill()
        notifier.enforce_deadlines(now)
        deadlines = [
            d
            for d in (sup.timeout_at, sup.escalate_at, sup.sweep_at, sup.kill_sent_at, notifier.next_deadline())
            if d is not None
        ]
        wait_s = min([follow_s] + [d - now for d in deadlines])
        if poller.poll(max(0, round(wait_s * 1000))):
            try:
                signums = os.read(sig_r, 4096)
            except BlockingIOError:
                signums = b""
            if _signal.SIGUSR1 in signums:
                sup.on_kill_request()
        has_children = _reap(sup, notifier, reap_all)
        wake_on_end()
        # While matching is behind, a watched log waits (its bytes are safe in the file).
        budgets = [notifier.room() if notifier.watches(f.stream) else follow.PUMP_BUDGET for f in followers]
        moved = [f.pump(budget) for f, budget in zip(followers, budgets, strict=True)]
        notifier.match_pending()
        behind = any(m and m >= b for m, b in zip(moved, budgets, strict=True)) or notifier.lines_waiting
        if behind:
            follow_s = 0.0  # look at signals, then carry on at once
        elif any(moved):
            follow_s = _FOLLOW_MIN_S
        else:
            follow_s = min(max(follow_s, _FOLLOW_MIN_S) * 2, _FOLLOW_MAX_S)
        if not has_children and not flushed and not any(moved) and not notifier.lines_waiting:
            # Every log is read to its end and nothing of the job is left to write to it:
            # a last line without a newline is complete.
            for f in followers:
                f.flush()
            notifier.match_pending()
            flushed = True
        if notifier.counters_changed:
            notifier.write_counters()
        sup.sync_state(time.monotonic())
        wake_on_end()
        if not has_children and flushed and not notifier.busy and sup.settled:
            return 0
