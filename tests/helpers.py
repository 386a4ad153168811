"""Test helpers shared by the jobcore tests: event-based hand-shakes with a job's command."""

from __future__ import annotations

import os
import select
from pathlib import Path

from jobcore import _procs

#: The tools of CONTRACT §5, as a client should find them.
CONTRACT_TOOLS = frozenset(
    {
        "create_job",
        "start_job",
        "run_job",
        "snapshot",
        "wait",
        "kill",
        "list_jobs",
        "restart_job",
        "delete_job",
        "tag_job",
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
    return _procs.job_processes(job_id, pgid)
