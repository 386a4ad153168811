"""Every operation on jobs, written once as a generator of waits (see :mod:`waiting`).

Operations that never wait end with a bare ``yield`` after their ``return``: it makes them
generators like the rest, so both drivers run every operation the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import signal
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any, TypeVar

from . import logs
from .deletion import delete_if_allowed, live_jobs
from .errors import JobError, invalid_input
from .inputs import (
    MAX_BYTES_CAP,
    DeleteInput,
    JobSpec,
    KillInput,
    ListInput,
    Observation,
    RunInput,
    SnapshotInput,
    StartInput,
    TagInput,
)
from .launch import launch
from .payloads import (
    CreatePayload,
    DeleteEntry,
    DeletePayload,
    Events,
    KillPayload,
    LaunchPayload,
    ListEntry,
    ListPayload,
    Snapshot,
    SnapshotPayload,
    TagPayload,
    WaitPayload,
)
from .policy import Policy
from .retention import auto_clean
from .store import FILE_MODE, JobDir, Store, is_running, new_job_id
from .supervisor import fsio, procs, records
from .times import epoch, parse_age
from .waiting import Steps, WaitFor

STDIN_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_LAUNCH_WAIT_S = 10.0
DEFAULT_WAIT_S = 30.0
DEFAULT_KILL_WAIT_S = 3.0
#: With the supervisor lost, other members of the group give no exit event: look again this often.
LOST_RECHECK_S = 0.5
_RESTART_STOP_S = 10.0
#: How long a supervisor may take to record an end, or to escalate a kill, before it is
#: taken for unresponsive and SIGKILLed (see docs/records.md).
SUPERVISOR_GRACE_S = 1.0
_CREATE_ID_TRIES = 16
#: Taken around counting running jobs and launching one, when ``max_running`` is set.
LAUNCH_LOCK = ".launch.lock"

_Op = TypeVar("_Op", bound=Callable[..., Any])


def _operation(name: str) -> Callable[[_Op], _Op]:
    """Refuse the operation up front on a read-only server, before its generator even starts."""

    def wrap(fn: _Op) -> _Op:
        @functools.wraps(fn)
        def checked(self: Operations, *args: Any, **kwargs: Any) -> Any:
            self.policy.check_operation(name)
            return fn(self, *args, **kwargs)

        return checked  # type: ignore[return-value]

    return wrap


def _capped_max_bytes(max_bytes: int) -> tuple[int, dict[str, int] | None]:
    """``max_bytes`` within the cap, and the payload's ``lowered_to`` when it had to be lowered."""
    if max_bytes > MAX_BYTES_CAP:
        return MAX_BYTES_CAP, {"max_bytes": MAX_BYTES_CAP}
    return max_bytes, None


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _events(jd: JobDir) -> Events | None:
    """Trigger counters, once an output trigger has fired or been disabled."""
    try:
        counters = fsio.read_json(jd.file(fsio.TRIGGERS))
    except (OSError, ValueError):
        return None
    return Events(
        matched=counters["matched"],
        last_line=counters.get("last_line"),
        undelivered=counters.get("undelivered") or None,
        disabled=counters.get("disabled"),
    )


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def wait_for_end(jd: JobDir, deadline: float) -> Steps[dict[str, Any]]:
    """The job's state once it has ended, or at the deadline; woken by the end itself.

    The supervisor holds the job's wake FIFO open for writing while the command runs;
    our read end hangs up the moment it closes it (after writing the end) or dies.
    The FIFO is opened before the state is read, so no end can slip between the two.
    """
    while True:
        with ExitStack() as stack:
            fifo = os.open(jd.file(fsio.WAKE_FIFO), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            stack.callback(os.close, fifo)
            state = jd.observed_state()
            remaining = deadline - time.monotonic()
            if records.is_ended(state) or remaining <= 0:
                return state
            request = WaitFor([fifo], remaining)
            if state.get("reason") == "supervisor_lost":
                leader = _pidfd(state["pid"]) if procs.is_alive(state["pid"]) else None
                if leader is not None:
                    stack.callback(os.close, leader)
                request = WaitFor([leader] if leader is not None else [], min(remaining, LOST_RECHECK_S))
            yield request


def _stop_job(
    job_id: str, pgid: int | None, signum: int | None, escalate_after: float | None, deadline: float
) -> Steps[list[int]]:
    """Send ``signum`` (None: none) to the job's processes and watch them go, until the deadline.

    With ``escalate_after``, SIGKILL whatever is still alive that many seconds later.
    Returns the pids still alive.
    """
    if signum is not None:
        procs.signal_job(job_id, pgid, signum)
    escalate_at = None if escalate_after is None else time.monotonic() + escalate_after
    while True:
        pids = procs.job_processes(job_id, pgid)
        now = time.monotonic()
        if not pids or now >= deadline:
            return pids
        if escalate_at is not None and now >= escalate_at:
            procs.signal_job(job_id, pgid, signal.SIGKILL)
            escalate_at = None
            continue
        until = deadline if escalate_at is None else min(deadline, escalate_at)
        yield from _wait_any_exit(pids, until - now)


def _live_supervisor(jd: JobDir, state: dict[str, Any]) -> int | None:
    supervisor = state.get("supervisor_pid")
    return supervisor if supervisor is not None and procs.is_supervisor_of(supervisor, str(jd.path)) else None


def _kill_supervisor(jd: JobDir, supervisor: int) -> Steps[None]:
    """SIGKILL a supervisor that does not respond and wait for it to go."""
    if procs.is_supervisor_of(supervisor, str(jd.path)):
        try:
            os.kill(supervisor, signal.SIGKILL)
        except ProcessLookupError:
            return
        yield from _wait_any_exit([supervisor], SUPERVISOR_GRACE_S)


def _end_unresponsive(jd: JobDir, supervisor: int) -> Steps[dict[str, Any]]:
    """SIGKILL a supervisor that has not recorded its job's end, and record the end for it.

    Under the job's lock, so no reader records the supervisor as lost meanwhile. The root
    process's exit status is read from its zombie (the stuck supervisor, its parent, never
    reaped it) before the supervisor goes and the zombie with it.
    """
    with jd.lock():
        state = jd.read_state()
        if records.is_ended(state):
            return state
        pgid = state.get("pid")
        status = procs.exit_status(pgid) if pgid is not None else None
        yield from _kill_supervisor(jd, supervisor)
        state = jd.read_state()
        if records.is_ended(state) or procs.job_processes(jd.job_id, pgid):
            return state  # a process came back to life: recorded as a lost supervisor's job
        started_at = records.started_at(state)
        fields: dict[str, Any] = {
            "started_at": started_at,
            "pid": pgid,
            "supervisor_pid": supervisor,
            "finished_at": fsio.now_rfc3339(),
            "duration_ms": _ms(time.time() - epoch(started_at)) if started_at else None,
            "reason": "killed",
            "supervisor": "unresponsive",
        }
        if status is not None and os.WIFEXITED(status):
            return jd.write_state("exited", exit_code=os.WEXITSTATUS(status), **fields)
        signal_name = procs.signal_name(os.WTERMSIG(status)) if status is not None else None
        return jd.write_state("killed", signal_name=signal_name, **fields)


def _wait_any_exit(pids: list[int], timeout: float) -> Steps[None]:
    with ExitStack() as stack:
        fds = []
        for pid in pids:
            if (fd := _pidfd(pid)) is not None:
                stack.callback(os.close, fd)
                fds.append(fd)
        if len(fds) == len(pids):  # else one is gone already: look again at once
            yield WaitFor(fds, timeout)


def _resolve(cwd: str, path: str) -> str:
    """A path input as an absolute path: ``~`` expanded, a relative one taken from the job's cwd."""
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))


def _open_regular_file(field: str, path: str) -> int:
    """A read descriptor of ``path``, refused at once unless it is a regular file.

    A FIFO or a device would block the read (or worse): it is seen by ``stat`` before any
    open, and the open itself does not block (O_NONBLOCK), so a file swapped in between is
    caught by ``fstat`` on the very descriptor that will be read.
    """

    def refuse(problem: str) -> JobError:
        return invalid_input(f"{field}: {path!r} {problem}", field=field, path=path)

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise refuse("is not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise refuse(f"cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refuse("is not a regular file")
    return fd


def _read_stdin(spec: JobSpec, stdin_file: str | None) -> bytes | None:
    if spec.stdin is not None and stdin_file is not None:
        raise invalid_input("give stdin or stdin_file, not both", field="stdin_file")
    if spec.stdin is not None:
        data = spec.stdin.encode()
    elif stdin_file is not None:
        fd = _open_regular_file("stdin_file", stdin_file)
        try:
            if os.fstat(fd).st_size > STDIN_MAX_BYTES:
                raise JobError(
                    "stdin_too_large",
                    f"stdin_file {stdin_file!r} is over {STDIN_MAX_BYTES} bytes",
                    details={"field": "stdin_file", "limit": STDIN_MAX_BYTES},
                )
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(STDIN_MAX_BYTES + 1)
        except OSError as exc:
            raise invalid_input(f"stdin_file: cannot read {stdin_file!r}: {exc.strerror}", field="stdin_file") from None
        finally:
            os.close(fd)
    else:
        return None
    if len(data) > STDIN_MAX_BYTES:
        raise JobError(
            "stdin_too_large",
            f"stdin is {len(data)} bytes, over the limit of {STDIN_MAX_BYTES}",
            details={"field": "stdin", "limit": STDIN_MAX_BYTES},
        )
    return data


def _notification(spec: JobSpec, cwd: str) -> dict[str, Any]:
    """The sinks of ``meta.json``; relative file paths are taken from the job's cwd."""

    def sinks(command: str | None, file: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if command is not None:
            out["notify_command"] = command
        if file is not None:
            out["notify_file"] = _resolve(cwd, file)
        return out

    notification = sinks(spec.notify_command, spec.notify_file)
    if (trigger := spec.on_output_match) is not None:
        notification["on_output_match"] = {
            "pattern": trigger.pattern,
            "match_type": trigger.match_type,
            "stream": trigger.stream,
            **sinks(trigger.notify_command, trigger.notify_file),
        }
    return notification


def _check_cwd(cwd: str | None) -> str:
    path = os.path.realpath(os.path.expanduser(cwd) if cwd is not None else os.getcwd())
    if not os.path.isdir(path):
        raise invalid_input(f"cwd: {cwd!r} is not an existing directory", field="cwd")
    return path


def _check_definition(policy: Policy, meta: dict[str, Any]) -> None:
    """Every rule of the policy a stored definition must obey: its paths and its commands.

    Checked when a job is defined and again when it is launched: the definition may predate
    the policy in force.
    """
    policy.check_path("cwd", meta["cwd"])
    for path in meta.get("env_files", []):
        policy.check_path("env_files", path)
    policy.check_command("command", meta["command"])
    # A chosen wrapper is a program the job runs too (sh -c, the default, is not checked).
    if isinstance(meta["command"], str) and tuple(meta["shell_wrapper"]) != records.DEFAULT_SHELL_WRAPPER:
        policy.check_command("shell_wrapper", meta["shell_wrapper"])
    notification = meta.get("notification", {})
    trigger = notification.get("on_output_match", {})
    for prefix, sinks in (("", notification), ("on_output_match.", trigger)):
        if "notify_file" in sinks:
            policy.check_path(prefix + "notify_file", sinks["notify_file"])
        if "notify_command" in sinks:
            policy.check_command(prefix + "notify_command", sinks["notify_command"])


def _tag_matches(tags: list[str], wanted: str) -> bool:
    if wanted.endswith(".*"):
        base = wanted[:-2]
        return any(t == base or t.startswith(base + ".") for t in tags)
    return wanted in tags


class Operations:
    """The engine's operations over one store; each returns a generator of waits."""

    def __init__(self, store: Store, policy: Policy) -> None:
        self.store = store
        self.policy = policy

    # --- defining and launching -------------------------------------------------------

    @_operation("create")
    def create(self, spec: JobSpec) -> Steps[CreatePayload]:
        jd = self._create(spec)
        return self._created_payload(jd)
        yield  # a generator, like every operation

    def _created_payload(self, jd: JobDir) -> CreatePayload:
        return CreatePayload(
            job_id=jd.job_id,
            stdout_log_path=jd.stdout_path,
            stderr_log_path=jd.stderr_path,
            full_log_path=jd.full_path,
        )

    def _create(self, spec: JobSpec) -> JobDir:
        """Validate everything first, so that a refused call creates nothing."""
        cwd = _check_cwd(spec.cwd)
        env_files = [_resolve(cwd, p) for p in spec.env_files]
        stdin_file = None if spec.stdin_file is None else _resolve(cwd, spec.stdin_file)
        env = spec.env or {}
        meta = records.meta_record(
            "",  # the id is set once the job's directory exists, after every check
            command=spec.command,
            cwd=cwd,
            created_at=fsio.now_rfc3339(),
            # Orders jobs created within one millisecond (created_at has ms resolution).
            created_ns=time.time_ns(),
            env_keys=list(env),
            env_vars=[f"{k}={'***' if k in spec.mask else v}" for k, v in env.items()],
            mask=spec.mask,
            inherit_env=spec.inherit_env,
            env_files=env_files,
            timeout_ms=_ms(spec.timeout),
            kill_after_ms=_ms(spec.kill_after),
            tags=spec.tags,
            shell_wrapper=spec.shell_wrapper,
            notification=_notification(spec, cwd),
        )
        _check_definition(self.policy, meta)
        if stdin_file is not None:
            self.policy.check_path("stdin_file", stdin_file)
        for path in env_files:
            os.close(_open_regular_file("env_files", path))  # read at start, by the supervisor
        stdin = _read_stdin(spec, stdin_file)
        if stdin is not None:
            meta["stdin_file"] = fsio.STDIN
        jd = self._new_dir()
        try:
            meta["job"]["id"] = jd.job_id
            if stdin is not None:
                fd = os.open(jd.file(fsio.STDIN), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
                with os.fdopen(fd, "wb") as f:
                    f.write(stdin)
            if env:
                fsio.write_json_atomic(jd.file(fsio.ENV), env, mode=FILE_MODE)
            jd.write_meta(meta)
            fsio.sync_dir(str(jd.root))  # the job's directory itself, in the root
            jd.empty_logs()
            os.mkfifo(jd.file(fsio.WAKE_FIFO), FILE_MODE)
            jd.write_state("created")
        except OSError as exc:
            shutil.rmtree(jd.path, ignore_errors=True)
            raise JobError("io_error", f"cannot write job {jd.job_id}: {exc}", retryable=True) from None
        return jd

    def _new_dir(self) -> JobDir:
        self.store.prepare()
        try:
            for _ in range(_CREATE_ID_TRIES):
                jd = JobDir(self.store.root, new_job_id())
                try:
                    jd.path.mkdir(mode=0o700)
                    return jd
                except FileExistsError:
                    continue
        except OSError as exc:
            raise JobError("io_error", f"cannot create a job under {self.store.root}: {exc}", retryable=True) from None
        raise JobError("io_error", f"no free job id after {_CREATE_ID_TRIES} tries", retryable=True)

    # --- the max_running rule -----------------------------------------------------------

    def _running_count(self, besides: JobDir | None = None) -> int:
        count = 0
        for job_id in self.store.job_ids():
            if besides is not None and job_id == besides.job_id:
                continue
            jd = JobDir(self.store.root, job_id)
            try:
                count += is_running(jd, jd.read_state())
            except (OSError, ValueError, KeyError, JobError):
                continue
        return count

    def _check_room(self, besides: JobDir | None = None) -> None:
        """``max_running``: refuse a launch that would run more jobs than allowed (retryable)."""
        cap = self.policy.max_running
        if cap is not None and (running := self._running_count(besides)) >= cap:
            raise JobError(
                "policy_denied",
                f"policy max_running: {running} jobs are running, the most allowed is {cap}; "
                "try again when one has ended",
                retryable=True,
                details={"rule": "max_running", "max_running": cap, "running": running},
            )

    @contextlib.contextmanager
    def _launch_slot(self, besides: JobDir | None = None) -> Iterator[None]:
        """Hold the root's launch lock while counting running jobs and launching one, so that
        concurrent launches cannot overshoot ``max_running``. Without that rule: no lock at all.

        Taken after the job's own lock, always in that order, so two launchers cannot deadlock.
        """
        if self.policy.max_running is None:
            yield
            return
        fd = os.open(self.store.root / LAUNCH_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._check_room(besides)
            yield
        finally:
            os.close(fd)

    # --- launching ----------------------------------------------------------------------

    @_operation("start")
    def start(self, inp: StartInput) -> Steps[LaunchPayload]:
        started = time.monotonic()
        max_bytes, lowered = _capped_max_bytes(inp.max_bytes)
        jd = self.store.open(inp.job_id)
        with jd.lock():
            state = jd.read_state()
            if records.status(state) != "created":
                raise JobError(
                    "invalid_state",
                    f"job {jd.job_id} is {state['job']['status']}; only a created job can be started",
                    details={"job_id": jd.job_id, "state": records.status(state)},
                )
            _check_definition(self.policy, jd.read_meta())
            with self._launch_slot(jd):
                launch(jd, self.policy.job_environ(os.environ))
        auto_clean(self.store.root)
        return (yield from self._observe("start", jd, inp, started, max_bytes, lowered))

    @_operation("run")
    def run(self, inp: RunInput) -> Steps[LaunchPayload]:
        started = time.monotonic()
        max_bytes, lowered = _capped_max_bytes(inp.max_bytes)
        self._check_room()  # a full store refuses before creating anything
        jd = self._create(inp)
        with jd.lock():
            try:
                with self._launch_slot(jd):
                    launch(jd, self.policy.job_environ(os.environ))
            except JobError as exc:
                if exc.code == "policy_denied":  # filled meanwhile by another launch: undo the create
                    jd.remove()
                raise
        auto_clean(self.store.root)
        return (yield from self._observe("run", jd, inp, started, max_bytes, lowered))

    @_operation("restart")
    def restart(self, inp: StartInput) -> Steps[LaunchPayload]:
        started = time.monotonic()
        max_bytes, lowered = _capped_max_bytes(inp.max_bytes)
        jd = self.store.open(inp.job_id)
        with jd.lock():
            _check_definition(self.policy, jd.read_meta())
            state = jd.observed_state()
            # The slot is held from before the old run is stopped: a refused restart changes nothing.
            with self._launch_slot(jd):
                if records.status(state) != "created":
                    yield from self._stop_all(jd, state)
                    jd.empty_logs()
                    for name in fsio.RUN_FILES:
                        try:
                            os.unlink(jd.file(name))
                        except FileNotFoundError:
                            pass
                    jd.write_state("created")
                launch(jd, self.policy.job_environ(os.environ))
        auto_clean(self.store.root)
        return (yield from self._observe("restart", jd, inp, started, max_bytes, lowered))

    def _stop_all(self, jd: JobDir, state: dict[str, Any]) -> Steps[None]:
        """End every process of the job and its supervisor, or refuse the restart.

        A supervisor that has not recorded the end a grace after the job's processes are gone
        does not respond: it is killed rather than waited for.
        """
        meta = jd.read_meta()
        deadline = time.monotonic() + _RESTART_STOP_S
        supervisor = state.get("supervisor_pid")
        left = yield from _stop_job(jd.job_id, state.get("pid"), signal.SIGTERM, meta["kill_after_ms"] / 1000, deadline)
        if not left and supervisor is not None and procs.is_supervisor_of(supervisor, str(jd.path)):
            ended = yield from wait_for_end(jd, time.monotonic() + SUPERVISOR_GRACE_S)
            if not records.is_ended(ended):
                yield from _kill_supervisor(jd, supervisor)
        # Having recorded the end, the supervisor finishes its deliveries and exits on its own.
        while not left and supervisor is not None and procs.is_supervisor_of(supervisor, str(jd.path)):
            if time.monotonic() >= deadline:
                left = [supervisor]
                break
            yield from _wait_any_exit([supervisor], deadline - time.monotonic())
        if left:
            raise JobError(
                "invalid_state",
                f"job {jd.job_id}: processes {left} did not end; not restarted",
                retryable=True,
                details={"job_id": jd.job_id, "pids": left},
            )

    def _observe(
        self,
        kind: str,
        jd: JobDir,
        obs: Observation,
        started: float,
        max_bytes: int,
        lowered: dict[str, int] | None,
    ) -> Steps[LaunchPayload]:
        wait_s = DEFAULT_LAUNCH_WAIT_S if obs.wait_seconds is None else obs.wait_seconds
        observed_from = time.monotonic()
        state = yield from wait_for_end(jd, observed_from + wait_s)
        now = time.monotonic()
        meta = jd.read_meta()
        snap = self._snapshot(jd, obs.tail_lines, max_bytes)
        ended = records.is_ended(state)
        return LaunchPayload(
            type=kind,  # type: ignore[arg-type]
            job_id=jd.job_id,
            state=records.status(state),
            tags=meta["tags"],
            env_vars=meta["env_vars"] or None,
            stdout_log_path=jd.stdout_path,
            stderr_log_path=jd.stderr_path,
            waited_ms=_ms(now - observed_from),
            elapsed_ms=_ms(now - started),
            snapshot=None if ended else snap,
            final_snapshot=snap if ended else None,
            lowered_to=lowered,
            **(records.end_fields(state) if ended else {"write_errors": state.get("write_errors")}),
        )

    # --- reading ------------------------------------------------------------------------

    @staticmethod
    def _snapshot(jd: JobDir, tail_lines: int, max_bytes: int, **offsets: int | None) -> Snapshot:
        return logs.snapshot(jd.stdout_path, jd.stderr_path, tail_lines=tail_lines, max_bytes=max_bytes, **offsets)

    @_operation("snapshot")
    def snapshot(self, inp: SnapshotInput) -> Steps[SnapshotPayload]:
        max_bytes, lowered = _capped_max_bytes(inp.max_bytes)
        jd = self.store.open(inp.job_id)
        meta = jd.read_meta()
        state = jd.observed_state()
        snap = self._snapshot(
            jd, inp.tail_lines, max_bytes, stdout_offset=inp.stdout_offset, stderr_offset=inp.stderr_offset
        )
        return SnapshotPayload(
            job_id=jd.job_id,
            state=records.status(state),
            command=meta["command"],
            cwd=meta["cwd"],
            tags=meta["tags"],
            created_at=meta["created_at"],
            started_at=records.started_at(state),
            updated_at=state["updated_at"],
            stdout_log_path=jd.stdout_path,
            stderr_log_path=jd.stderr_path,
            full_log_path=jd.full_path,
            events=_events(jd),
            snapshot=snap,
            lowered_to=lowered,
            **records.end_fields(state),
        )
        yield

    @_operation("wait")
    def wait(self, inp: StartInput) -> Steps[WaitPayload]:
        max_bytes, lowered = _capped_max_bytes(inp.max_bytes)
        jd = self.store.open(inp.job_id)
        wait_s = DEFAULT_WAIT_S if inp.wait_seconds is None else inp.wait_seconds
        begun = time.monotonic()
        state = yield from wait_for_end(jd, begun + wait_s)
        waited_ms = _ms(time.monotonic() - begun)
        snap = self._snapshot(jd, inp.tail_lines, max_bytes)
        ended = records.is_ended(state)
        return WaitPayload(
            job_id=jd.job_id,
            state=records.status(state),
            waited_ms=waited_ms,
            timed_out=not ended,
            events=_events(jd),
            snapshot=None if ended else snap,
            final_snapshot=snap if ended else None,
            lowered_to=lowered,
            **records.end_fields(state),
        )

    # --- signalling ---------------------------------------------------------------------

    @_operation("kill")
    def kill(self, inp: KillInput) -> Steps[KillPayload]:
        jd = self.store.open(inp.job_id)
        state = jd.observed_state()
        if records.status(state) == "created":
            raise JobError(
                "invalid_state", f"job {jd.job_id} has not started; nothing to kill", details={"job_id": jd.job_id}
            )
        wait_s = DEFAULT_KILL_WAIT_S if inp.wait_seconds is None else inp.wait_seconds
        begun = time.monotonic()
        pgid = state.get("pid")
        pids = procs.job_processes(jd.job_id, pgid)
        supervisor = _live_supervisor(jd, state)
        deadline = begun
        sent = None
        if pids:
            signum = getattr(signal, inp.signal)
            # Written before any signal, so the supervisor records the end as killed.
            fsio.write_json_atomic(
                jd.file(fsio.KILL_REQUEST), {"signal": inp.signal, "requested_at": fsio.now_rfc3339()}
            )
            ending = signum not in (signal.SIGUSR1, signal.SIGUSR2)
            deadline = begun + wait_s if ending else begun
            kill_after = jd.read_meta()["kill_after_ms"] / 1000
            if supervisor is not None:
                os.kill(supervisor, signal.SIGUSR1)  # it escalates to SIGKILL after kill_after
                # Should it not have, a grace later: we do (it is judged by the end, below).
                escalate_after = kill_after + SUPERVISOR_GRACE_S if ending else None
            else:
                escalate_after = kill_after if ending else None
            yield from _stop_job(jd.job_id, pgid, signum, escalate_after, deadline)
            sent = inp.signal
        if (
            supervisor is not None
            and procs.is_supervisor_of(supervisor, str(jd.path))
            and not procs.job_processes(jd.job_id, pgid)
        ):
            # The job is gone: its supervisor records the end at once, unless it is stuck.
            state = yield from wait_for_end(jd, time.monotonic() + SUPERVISOR_GRACE_S)
            if not records.is_ended(state):
                state = yield from _end_unresponsive(jd, supervisor)
        else:
            state = yield from wait_for_end(jd, deadline)
        return KillPayload(
            job_id=jd.job_id,
            signal=sent,
            state=records.status(state),
            exit_code=records.exit_code(state),
            observed_within_ms=_ms(time.monotonic() - begun),
        )

    # --- the store ----------------------------------------------------------------------

    def _entries(self) -> Iterator[tuple[JobDir, dict[str, Any], dict[str, Any]] | None]:
        """(job dir, meta, observed state) of every job; None for an unreadable one."""
        for job_id in self.store.job_ids():
            jd = JobDir(self.store.root, job_id)
            try:
                yield jd, jd.read_meta(), jd.observed_state()
            except (OSError, ValueError, KeyError, JobError):
                yield None

    @_operation("list")
    def list(self, inp: ListInput) -> Steps[ListPayload]:
        scope = None if inp.all else _check_cwd(inp.cwd)
        jobs: list[tuple[tuple[str, int, str], ListEntry]] = []
        skipped = 0
        for entry in self._entries():
            if entry is None:
                skipped += 1
                continue
            jd, meta, state = entry
            status = records.status(state)
            cwd = meta["cwd"]
            if scope is not None and cwd != scope and not cwd.startswith(scope.rstrip("/") + "/"):
                continue
            if inp.state is not None and status != inp.state:
                continue
            if not all(_tag_matches(meta["tags"], t) for t in inp.tags):
                continue
            order = (meta["created_at"], meta.get("created_ns", 0), jd.job_id)
            jobs.append(
                (
                    order,
                    ListEntry(
                        job_id=jd.job_id,
                        state=status,
                        command=meta["command"],
                        cwd=cwd,
                        tags=meta["tags"],
                        exit_code=records.exit_code(state),
                        reason=state.get("reason"),
                        created_at=meta["created_at"],
                        started_at=records.started_at(state),
                        finished_at=state.get("finished_at"),
                        updated_at=state["updated_at"],
                    ),
                )
            )
        jobs.sort(key=lambda pair: pair[0], reverse=True)
        truncated = bool(inp.limit) and len(jobs) > inp.limit
        return ListPayload(
            root=str(self.store.root),
            jobs=[entry for _, entry in (jobs[: inp.limit] if inp.limit else jobs)],
            truncated=truncated,
            skipped=skipped,
        )
        yield

    @_operation("delete")
    def delete(self, inp: DeleteInput) -> Steps[DeletePayload]:
        if (inp.job_id is None) == (inp.finished_older_than is None):
            raise invalid_input("give job_id or finished_older_than (exactly one)", field="job_id")
        results: list[DeleteEntry] = []
        if inp.job_id is not None:
            jd = self.store.open(inp.job_id)
            results.append(self._delete_one(jd, jd.observed_state(), inp.dry_run, None, None))
        else:
            cutoff = time.time() - parse_age(inp.finished_older_than or "")
            live = live_jobs()
            for entry in self._entries():
                if entry is not None:
                    jd, _, state = entry
                    results.append(self._delete_one(jd, state, inp.dry_run, cutoff, live))
        return DeletePayload(
            root=str(self.store.root),
            dry_run=inp.dry_run,
            deleted=sum(r.action == "deleted" for r in results),
            skipped=sum(r.action == "skipped" for r in results),
            jobs=results,
        )
        yield

    def _delete_one(
        self, jd: JobDir, seen: dict[str, Any], dry_run: bool, by_age: float | None, live: set[str] | None
    ) -> DeleteEntry:
        try:
            return delete_if_allowed(jd, finished_before=by_age, dry_run=dry_run, live=live)
        except JobError:
            return DeleteEntry(job_id=jd.job_id, state=records.status(seen), action="skipped", reason="gone")

    @_operation("tag")
    def tag(self, inp: TagInput) -> Steps[TagPayload]:
        jd = self.store.open(inp.job_id)
        with jd.lock():
            meta = jd.read_meta()
            meta["tags"] = inp.tags
            jd.write_meta(meta)
        return TagPayload(job_id=jd.job_id, tags=inp.tags)
        yield
