"""The fork server: forks supervisors ahead of requests, so a launch costs no interpreter and no fork.

Standard library only, imported by path under ``python -S -E`` like the supervisor, whose
modules it has loaded already: each supervisor it forks starts warm and shares those pages
with its siblings (copy-on-write; :func:`gc.freeze` keeps the collector from touching them).

One per job store, started detached (its own session, stdio on /dev/null) by the first launch
that finds none (see :mod:`jobcore.forkserve`). It listens on ``.forkserver.sock`` in the
store's root, mode 0600, and serves only its own user. One forked spare at a time waits on
that socket and takes the next request itself (we then fork the next spare). A request is
one length-prefixed JSON message ``{"job_dir", "env", "umask", "rlimits", "code"}`` carrying
the launcher's acknowledgement pipe (``SCM_RIGHTS``); the answer is the supervisor's pid.
``code`` is :func:`code_stamp` as the launcher sees it: a fork server started before the
supervisor's code was replaced (an upgrade) refuses, removes its socket and exits, so the next
launch starts one with the code on disk. The
spare leaves our session for its own, is given the request's environment (never ours) for
the job, the launcher's umask and resource limits, keeps the job directory open on fd 3 (how
readers tell a forked supervisor, whose command line is ours, see
:func:`procs.is_supervisor_of`), and runs :func:`supervisor.main.main` with fd 2 on the
pipe, as a spawned supervisor would.

Once its first spare is forked (the launch that started us waits for nothing more), the
server supervises throwaway jobs itself (:func:`supervisor.warmup.warm_up`), so that
what the interpreter fills in on first use (its type cache, the adaptive bytecode of the
supervisor's code) is filled in here, once, and shared, instead of being written again by
every supervisor: each then keeps ~230 KiB fewer pages of its own.

We reap our children (the supervisors and the spare) and nothing else. Killing us takes no
job with us: each supervisor is in its own session and carries on, reparented; the spare
sees its lifeline pipe end and exits. With no supervisor left and no request for
:data:`IDLE_EXIT_S`, or once our socket is gone (the root removed), we exit.
"""

from __future__ import annotations

import _signal
import _socket
import fcntl
import gc
import os
import resource
import select
import sys
import time

from . import fsio, main, warmup

IDLE_EXIT_S = 10.0
SOCKET_NAME = ".forkserver.sock"
#: Taken by a launcher starting a fork server, and by one stepping aside.
LOCK_NAME = ".forkserver.lock"
_HERE = os.path.dirname(os.path.abspath(__file__))
#: In our environment, ``1``: we and every supervisor we fork opt into the kernel's same-page
#: merging (KSM), so pages supervisors have written alike are shared again where the machine
#: runs it (``docs/performance.md``). Off by default: merged pages are a timing side channel.
MERGE_PAGES_VAR = "AGENT_JOBS_KSM"
_PR_SET_MEMORY_MERGE = 67
#: Where a forked supervisor keeps its job directory open.
JOB_DIR_FD = 3
#: Largest request accepted (the environment is most of it).
MAX_REQUEST = 4 * 1024 * 1024
_SCM_RIGHTS = 1
_SO_PEERCRED = 17


def code_stamp() -> str:
    """The supervisor's code as it is on disk now: each module's name, size and modification time."""
    parts = []
    for name in sorted(os.listdir(_HERE)):
        if name.endswith(".py"):
            st = os.stat(f"{_HERE}/{name}")
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts)


def _step_aside(path: str, ino: int) -> None:
    """Remove our socket (under the lock a launcher takes to start a fork server, so never a
    newer server's): the next launch starts one, and we exit once we see it gone."""
    lock = os.open(f"{os.path.dirname(path)}/{LOCK_NAME}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _still_ours(path, ino):
            os.unlink(path)
    finally:
        os.close(lock)


def _recv_request(conn: _socket.socket) -> tuple[dict, int]:
    """The request and the pipe fd it carries."""
    data, ancdata, _, _ = conn.recvmsg(65536, _socket.CMSG_SPACE(4))
    fds = [
        int.from_bytes(cdata[i : i + 4], sys.byteorder)
        for level, kind, cdata in ancdata
        if level == _socket.SOL_SOCKET and kind == _SCM_RIGHTS
        for i in range(0, len(cdata) - len(cdata) % 4, 4)
    ]
    try:
        if len(fds) != 1 or len(data) < 4:
            raise ValueError("a request carries one fd and a length")
        size = int.from_bytes(data[:4], "big")
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        body = data[4:]
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise ValueError("request cut short")
            body += chunk
        request = fsio.loads(body.decode())
        if not isinstance(request, dict) or not isinstance(request.get("job_dir"), str):
            raise ValueError("no job_dir")
        if not isinstance(request.get("env"), dict):
            raise ValueError("no env")
        if not isinstance(request.get("umask"), int) or not isinstance(request.get("rlimits"), list):
            raise ValueError("no umask or rlimits")
        if not isinstance(request.get("code", ""), str):
            raise ValueError("code is not a string")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds[0]


#: Our resource limits, read once before the first fork: a spare compares a request's with
#: these (which it inherited) and changes only those that differ, calling nothing for the rest.
_OWN_LIMITS: dict[int, tuple[int, int]] = {}


def _read_own_limits() -> None:
    for name, which in vars(resource).items():
        if name.startswith("RLIMIT_") and isinstance(which, int):
            _OWN_LIMITS[which] = resource.getrlimit(which)


def _own_limit(which: int) -> tuple[int, int]:
    return _OWN_LIMITS.get(which) or resource.getrlimit(which)


def _limits_refused(rlimits: list) -> str | None:
    """Why we cannot give a child the launcher's resource limits (a hard limit above ours
    cannot be raised back), or None: the launcher then spawns its supervisor itself."""
    for which, _, hard in rlimits:
        ours = _own_limit(which)[1]
        if ours != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > ours):
            return f"resource limit {which} is above the fork server's"
    return None


def _child(request: dict, ack_fd: int) -> None:
    """In the spare that took a request: become a supervisor as a spawned one would be. Never returns."""
    code = 1
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(ack_fd, 2)
        os.close(devnull)
        os.close(ack_fd)
        job_dir = os.path.abspath(request["job_dir"])
        dir_fd = os.open(job_dir, os.O_RDONLY | os.O_DIRECTORY)
        if dir_fd != JOB_DIR_FD:
            os.dup2(dir_fd, JOB_DIR_FD, inheritable=False)
            os.close(dir_fd)
        environ = {str(k): str(v) for k, v in request["env"].items()}
        os.umask(request["umask"])
        for which, soft, hard in request["rlimits"]:
            if (soft, hard) != _own_limit(which):
                resource.setrlimit(which, (soft, hard))
        code = main.main(job_dir, environ)
    except BaseException as exc:
        try:
            # The last line is what the launcher reports, as of a spawned supervisor's traceback.
            os.write(2, f"{type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def _take_request(conn: _socket.socket, ours: _Socket) -> tuple[dict, int] | None:
    """Check the caller and read its request, answering our pid; None once refused."""
    conn.settimeout(5.0)
    creds = conn.getsockopt(_socket.SOL_SOCKET, _SO_PEERCRED, 12)
    if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
        return None
    try:
        request, ack_fd = _recv_request(conn)
    except (OSError, ValueError) as exc:
        conn.sendall(f"error {exc}\n".encode())
        return None
    if request.get("code", ours.code) != ours.code:
        # A launcher without a stamp (one started before stamps) spawns what is on disk too.
        os.close(ack_fd)
        _step_aside(ours.path, ours.ino)
        conn.sendall(b"error the fork server's code is older than the launcher's\n")
        return None
    if (refused := _limits_refused(request["rlimits"])) is not None:
        os.close(ack_fd)
        conn.sendall(f"error {refused}\n".encode())
        return None
    try:
        conn.sendall(f"{os.getpid()}\n".encode())
    except OSError:
        os.close(ack_fd)
        raise
    return request, ack_fd


def _spare(listener: _socket.socket, ours: _Socket, lifeline: int, taken: int, close: list[int]) -> None:
    """In a forked spare: wait for one request and become its supervisor. Never returns.

    It accepts the connection itself and says so on ``taken``, with its pid (the fork server
    then forks the next spare), so a launch waits for no fork, and the fork server parses
    nothing: between two forks it writes to hardly a page, so siblings keep sharing what they
    inherited."""
    code = 0
    try:
        # Our signal pipe is let go before it is closed, so no signal writes to a reused fd.
        _signal.set_wakeup_fd(-1)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        for fd in close:
            os.close(fd)
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        poller.register(lifeline, select.POLLIN)
        while True:
            # The lifeline's write end is the fork server's alone: its end (or death) ends us.
            if any(fd == lifeline for fd, _ in poller.poll()):
                return
            try:
                fd, _ = listener._accept()
                break
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
        os.write(taken, os.getpid().to_bytes(4, sys.byteorder))
        for held in (listener.fileno(), lifeline, taken):
            os.close(held)
        conn = _socket.socket(fileno=fd)
        try:
            taken_request = _take_request(conn, ours)
        finally:
            conn.close()
        if taken_request is not None:
            _child(*taken_request)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


class _Socket:
    """Our socket (its path and inode: whether the path is still ours) and the code we loaded."""

    def __init__(self, path: str, ino: int, code: str) -> None:
        self.path, self.ino, self.code = path, ino, code


class _Children:
    """The fork server's children: supervisors, and the one spare waiting for a request."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self.spare: int | None = None
        #: A spare took a request since the idle clock was last looked at.
        self.took = False

    def reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            self.pids.discard(pid)
            if pid == self.spare:
                self.spare = None  # died waiting (killed), or took a request and is done already

    def took_requests(self, message: bytes) -> None:
        """Spares that took a request, each named by its pid on the pipe: supervisors now. One
        reaped before its message is read is no longer the spare, nor is the one forked since."""
        for at in range(0, len(message) - 3, 4):
            if int.from_bytes(message[at : at + 4], sys.byteorder) == self.spare:
                self.spare = None
        self.took = self.took or bool(message)

    @property
    def supervising(self) -> bool:
        return len(self.pids) > (self.spare is not None)


def _still_ours(path: str, ino: int) -> bool:
    try:
        return os.stat(path).st_ino == ino
    except OSError:
        return False


def serve(root: str) -> int:
    """Listen under ``root`` and fork supervisors until idle; fd 2 gets ``READY`` once listening.

    One forked spare at a time waits for the next request (see :func:`_spare`); we fork the
    next as soon as it has taken one."""
    path = os.path.join(os.path.abspath(root), SOCKET_NAME)
    os.chdir("/")  # no directory of the launcher's is kept busy by us
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(128)
    listener.setblocking(False)  # a connection reset between poll and accept never blocks a spare
    ino = os.stat(path).st_ino
    ours = _Socket(path, ino, code_stamp())
    sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    taken_r, taken_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    lifeline_r, lifeline_w = os.pipe2(os.O_CLOEXEC)
    _signal.signal(_signal.SIGCHLD, lambda *_: None)
    _signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
    os.write(2, b"READY")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    children = _Children()
    poller = select.poll()
    poller.register(sig_r, select.POLLIN)
    poller.register(taken_r, select.POLLIN)
    spare_close = [sig_r, sig_w, taken_r, lifeline_w]
    _read_own_limits()
    if os.environ.get(MERGE_PAGES_VAR) == "1":
        # Inherited by every fork; a kernel without it (before 6.4) says EINVAL: nothing merged.
        main.prctl(_PR_SET_MEMORY_MERGE, 1, 0, 0, 0)
    gc.collect()
    gc.freeze()  # what we loaded stays shared with every child: the collector never writes to it
    warm = False
    idle_since = time.monotonic()
    # Between two forks we do as little as we can: every page we write meanwhile is one the
    # supervisor forked before no longer shares with the next. The clock and the socket are
    # looked at in quiet seconds only; children are reaped when one has exited.
    while True:
        if children.spare is None:
            try:
                pid = os.fork()
            except OSError:
                pid = -1  # no process to spare now (a limit reached): tried again in a second
            if pid == 0:
                _spare(listener, ours, lifeline_r, taken_w, spare_close)
            if pid > 0:
                children.spare = pid
                children.pids.add(pid)
        if not warm:
            # Once the launch that started us has its spare: what the next spares share.
            warm = True
            warmup.warm_up(os.path.dirname(path))
            _signal.signal(_signal.SIGCHLD, lambda *_: None)
            _signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
            children.reap()  # what exited meanwhile woke the warm-up, not us
            gc.collect()
            gc.freeze()
            continue
        ready = poller.poll(1000)
        for fd, _ in ready:
            if fd == taken_r:
                children.took_requests(_drain(fd))
            else:
                _drain(fd)
                children.reap()
        if ready:
            continue
        if not _still_ours(path, ino):
            break
        now = time.monotonic()
        if children.supervising or children.took:
            idle_since, children.took = now, False
        elif now - idle_since >= IDLE_EXIT_S:
            break
    if _still_ours(path, ino):
        os.unlink(path)
    # The spare sees its lifeline end and exits (we reap it), unless it took a request
    # meanwhile: it then carries on as a supervisor, reparented like the others.
    os.close(lifeline_w)
    deadline = time.monotonic() + IDLE_EXIT_S
    while children.spare is not None and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            if fd == taken_r and _drain(fd):
                return 0
            _drain(fd)
        children.reap()
    return 0


def _drain(fd: int) -> bytes:
    """Empty a non-blocking pipe: what was in it."""
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""
