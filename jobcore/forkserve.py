"""Asking the store's fork server for a supervisor, starting the server when there is none.

See :mod:`jobcore.supervisor.forkserver` for the server. Every failure here (no server and
none can be started, a refusal, a cut connection) returns None: the launcher then spawns the
supervisor itself, as it always could. ``AGENT_JOBS_FORKSERVER=0`` in the server's
environment turns the fork server off (see docs/settings.md).
"""

from __future__ import annotations

import fcntl
import os
import resource
import select
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .supervisor import fsio
from .supervisor.forkserver import LOCK_NAME, MERGE_PAGES_VAR, SOCKET_NAME, code_stamp

ENABLE_VAR = "AGENT_JOBS_FORKSERVER"
#: How long a fork server may take to start listening before the launch goes without it.
START_TIMEOUT_S = 5.0
#: How long a request may take to be answered.
ANSWER_TIMEOUT_S = 5.0
_JOBCORE_DIR = os.path.dirname(os.path.abspath(__file__))


def enabled() -> bool:
    return os.environ.get(ENABLE_VAR, "1") != "0"


def server_argv(root: str) -> list[str]:
    code = (
        f"import sys; sys.path.insert(0, {_JOBCORE_DIR!r}); import supervisor.forkserver as f; "
        "sys.exit(f.serve(sys.argv[1]))"
    )
    return [sys.executable, "-S", "-E", "-c", code, root]


def fork_supervisor(
    root: Path, job_dir: str, environ: dict[str, str], ack_fd: int, reap: Callable[[int], None]
) -> int | None:
    """The pid of a supervisor forked for ``job_dir`` (fd 2 on ``ack_fd``), or None.

    ``reap`` is given the pid of a fork server this call starts: our child until it exits."""
    if not enabled():
        return None
    path = str(root / SOCKET_NAME)
    try:
        conn = _connect(path)
        if conn is None:
            conn = _start_and_connect(root, path, reap)
        if conn is None:
            return None
        with conn:
            return _request(conn, job_dir, environ, ack_fd)
    except (OSError, ValueError):
        return None


def _connect(path: str) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(ANSWER_TIMEOUT_S)
    try:
        conn.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    except BaseException:
        conn.close()
        raise
    return conn


def _start_and_connect(root: Path, path: str, reap: Callable[[int], None]) -> socket.socket | None:
    """Start a fork server (one launcher at a time) and connect to it."""
    lock = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (conn := _connect(path)) is not None:
            return conn  # another launcher started it meanwhile
        try:
            os.unlink(path)  # a dead server's socket
        except FileNotFoundError:
            pass
        if not _start(str(root), reap):
            return None
        return _connect(path)
    finally:
        os.close(lock)


def _start(root: str, reap: Callable[[int], None]) -> bool:
    """Spawn the server detached; True once it says it listens."""
    environ = {"PATH": os.defpath}  # it runs nothing itself: each request brings its environment
    if os.environ.get(MERGE_PAGES_VAR) == "1":
        environ[MERGE_PAGES_VAR] = "1"
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(
            sys.executable,
            server_argv(root),
            environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, write_fd, 2),
            ],
            setsid=True,
        )
        os.close(write_fd)
        write_fd = -1
        reap(pid)
        got = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not got.endswith(b"READY") and (remaining := deadline - time.monotonic()) > 0:
            if not select.select([read_fd], [], [], remaining)[0]:
                break
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            got += chunk
        return got.endswith(b"READY")
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def _rlimits() -> list[list[int]]:
    """Our resource limits, which a spawned supervisor would inherit: the forked one is given them."""
    return [
        [which, *resource.getrlimit(which)]
        for name, which in vars(resource).items()
        if name.startswith("RLIMIT_") and isinstance(which, int)
    ]


def _request(conn: socket.socket, job_dir: str, environ: dict[str, str], ack_fd: int) -> int | None:
    umask = os.umask(0o077)
    os.umask(umask)
    request = {"job_dir": job_dir, "env": dict(environ), "umask": umask, "rlimits": _rlimits(), "code": code_stamp()}
    body = fsio.dumps(request, indent=None).encode()
    message = len(body).to_bytes(4, "big") + body
    sent = conn.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, ack_fd.to_bytes(4, sys.byteorder))])
    if sent < len(message):
        conn.sendall(message[sent:])
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = conn.recv(256)
        if not chunk:
            return None
        answer += chunk
    text = answer.decode().strip()
    return int(text) if text.isdigit() else None
