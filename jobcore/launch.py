"""Starting a job's supervisor, detached, and reaping it when it ends.

The supervisor runs in its own session (the stdio client kills the server's process group
on shutdown) and acknowledges on its stderr pipe once it owns the job. A launch not
acknowledged within :data:`ACK_TIMEOUT_S` ends ``failed`` with ``launch_failed``, and the
``supervisor.ack`` marker, taken with ``O_EXCL``, keeps a late supervisor from running it.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time

from . import forkserve
from .errors import JobError
from .store import FILE_MODE, JobDir
from .supervisor import fsio, procs, records
from .waiting import Flow, WaitFor

ACK_TIMEOUT_S = 5.0
_JOBCORE_DIR = os.path.dirname(os.path.abspath(__file__))
#: Imported rather than run as a script, so its bytecode is cached; by path under -S, so
#: neither ``site`` nor this package (pydantic) is loaded: ~15 ms and ~11 MB a supervisor.
_SUPERVISOR_FLAGS = ("-S", "-E")
_SUPERVISOR_IMPORT = f"import sys; sys.path.insert(0, {_JOBCORE_DIR!r}); import supervisor.main"


def supervisor_argv(job_dir: str, *, then: str = "sys.exit(supervisor.main.main(sys.argv[1]))") -> list[str]:
    """The argv that starts a supervisor for ``job_dir``: the interpreter, its flags and the
    import line, followed by ``then`` (tests replace it to look at what the start-up loaded)."""
    return [sys.executable, *_SUPERVISOR_FLAGS, "-c", f"{_SUPERVISOR_IMPORT}; {then}", job_dir]


class _Reaper:
    """One thread that waits on the pidfds of every supervisor this process spawned.

    The server lives long and spawns many supervisors; each must be waited for or it stays
    a zombie. No SIGCHLD handler and no ``waitpid(-1)``: other children are not ours to reap.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._pids: dict[int, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, pid: int) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pass  # a forked supervisor that died already: its pipe says so below
        with self._lock:
            self._pids[pidfd] = pid
            self._epoll.register(pidfd, select.EPOLLIN)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="agent-jobs-reaper", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            for pidfd, _ in self._epoll.poll():
                with self._lock:
                    pid = self._pids.pop(pidfd)
                    self._epoll.unregister(pidfd)
                os.close(pidfd)
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass


_reaper = _Reaper()


def _read_ack(fd: int, deadline: float) -> Flow[tuple[bool, bytes]]:
    """Read the supervisor's stderr until it says ACK, closes it, or the deadline passes.

    The wait is yielded (see :mod:`jobcore.waiting`): the async API waits in the event loop,
    so a thousand launches at once do not hold a thousand threads; it is shielded, so a
    cancelled call still learns whether the supervisor took the job.
    """
    got = b""
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            chunk = os.read(fd, 65536)  # the read end is non-blocking
        except BlockingIOError:
            yield WaitFor([fd], remaining, shield=True)
            continue
        if not chunk:
            break
        got += chunk
        if got.endswith(b"ACK"):
            return True, got
    return False, got


def _cause(output: bytes, fallback: str) -> str:
    lines = [ln for ln in output.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else fallback


def launch(jd: JobDir, environ: dict[str, str]) -> Flow[None]:
    """Start the supervisor of a ``created`` job (the caller holds the job's lock).

    ``environ`` is the environment the supervisor, and through it the job and its notify
    commands, inherits: the server's, less what the policy keeps back (``Policy.job_environ``).
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(read_fd, False)  # the write end, the supervisor's stderr, stays blocking
    pidfd = None
    try:
        # Forked by the store's fork server (its child, reaped by it) or spawned by us (ours).
        pid = forkserve.fork_supervisor(jd.path.parent, str(jd.path), environ, write_fd, _reaper.watch)
        if pid is None:
            try:
                pid = os.posix_spawn(
                    sys.executable,
                    supervisor_argv(str(jd.path)),
                    environ,
                    file_actions=[
                        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                        (os.POSIX_SPAWN_DUP2, write_fd, 2),
                    ],
                    setsid=True,
                )
            except OSError as exc:
                _fail(jd, f"cannot start the supervisor: {exc}")
            _reaper.watch(pid)
        os.close(write_fd)
        write_fd = -1
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pass  # a forked supervisor that died already: its pipe says so below
        acked, output = yield from _read_ack(read_fd, time.monotonic() + ACK_TIMEOUT_S)
        if acked:
            return
        # No acknowledgement: make sure this supervisor can never run the job, then decide.
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it died on its own (and may be reaped already)
        cause = _cause(output, f"supervisor did not acknowledge within {ACK_TIMEOUT_S:g} s")
        _fail(jd, cause)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        if pidfd is not None:
            os.close(pidfd)


def _fail(jd: JobDir, cause: str) -> None:
    """Record ``launch_failed``; a command the supervisor started before it failed is killed.

    The definition is made durable here too: the supervisor that would have done it may not have.
    """
    fsio.sync_definition(str(jd.path))
    try:
        os.close(os.open(jd.file(fsio.ACK), os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
    except FileExistsError:
        state = jd.read_state()
        if records.is_ended(state):
            return  # it ran and recorded the end (exec_failed) before dying: that record stands
        procs.signal_job(jd.job_id, state.get("pid"), signal.SIGKILL)
    jd.write_state("failed", finished_at=fsio.now_rfc3339(), reason=f"launch_failed: {cause}")
    raise JobError("launch_failed", f"job {jd.job_id} did not launch: {cause}", details={"job_id": jd.job_id})
