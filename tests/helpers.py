"""Test helpers: event-based hand-shakes with a job's command, the tool list, a server's auth header."""

from __future__ import annotations

import os
import select
from pathlib import Path
from typing import Any

from jobcore.supervisor import procs

#: Every tool the server lists, as a client should find them.
TOOLS = frozenset(
    {
        "create_job",
        "start_job",
        "run_job",
        "snapshot",
        "search_output",
        "wait",
        "kill",
        "list_jobs",
        "restart_job",
        "delete_job",
        "tag_job",
        "server_info",
    }
)


class Fifo:
    """A named pipe a job's command and the test meet at: each side blocks until the other comes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)

    def __str__(self) -> str:
        return str(self.path)

    def read(self, timeout: float = 10.0) -> bytes:
        """Block until the command writes a line (it runs ``echo x > $FIFO``)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            got = b""
            while not got.endswith(b"\n"):
                ready, _, _ = select.select([fd], [], [], timeout)
                assert ready, f"no line on {self.path} within {timeout} s"
                chunk = os.read(fd, 4096)
                if not chunk:
                    # No writer yet (or it closed): wait for one to open the pipe.
                    _wait_writer(fd, timeout)
                got += chunk
            return got
        finally:
            os.close(fd)

    def write(self, line: str = "go") -> None:
        """Unblock a command waiting in ``read x < $FIFO``."""
        with open(self.path, "w") as f:
            f.write(line + "\n")


def _wait_writer(fd: int, timeout: float) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.poll(timeout * 1000)


def wait_exit(pid: int, timeout: float = 10.0) -> None:
    """Block until ``pid`` exits (a zombie counts as gone)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"pid {pid} still alive after {timeout} s"
    finally:
        os.close(fd)


def job_pids(job_id: str, pgid: int | None) -> list[int]:
    return procs.job_processes(job_id, pgid)


def auth_headers(service: Any) -> dict[str, str]:
    """The ``Authorization`` header an HTTP service under test wants (none with ``--no-auth``)."""
    token = service.cfg.token
    return {} if token is None else {"Authorization": f"Bearer {token}"}


class ServerProcess:
    """``python -m server serve ...`` as a real subprocess, its stderr collected by a thread.

    :meth:`line` blocks until the server has logged a line containing a given text (its URL,
    say), so a test waits on the server's own word that it is ready.
    """

    def __init__(self, *flags: str, env: dict[str, str], cwd: Path | None = None) -> None:
        import subprocess
        import sys
        import threading

        repo = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", *flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(repo), **env},
        )
        self.lines: list[str] = []
        self.closed = False  # stderr ended: the server has exited
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def line(self, text: str, timeout: float = 30.0) -> str:
        """The first stderr line containing ``text``, once the server has logged it."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: self.closed or any(text in line for line in self.lines),
                timeout,
            )
            matches = [line for line in self.lines if text in line]
            assert found and matches, f"no {text!r} on stderr within {timeout} s: {self.lines}"
            return matches[0]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
