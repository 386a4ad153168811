"""Test helpers: event-based hand-shakes with a job's command, the tool list, and the ways tests
reach a server (its auth header, a first HTTP request, a raw stdio process, a run that exits at once)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx2

from jobcore.supervisor import procs

REPO = Path(__file__).resolve().parent.parent

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

#: The ``params`` of the ``initialize`` request a test sends by hand.
INITIALIZE_PARAMS: dict[str, Any] = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "t", "version": "0"},
}
#: The whole ``initialize`` request, as an HTTP test posts it.
INITIALIZE: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INITIALIZE_PARAMS}
#: What a streamable-HTTP client must say it accepts.
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


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


async def first_status(url: str, transport: str, headers: dict[str, str]) -> int:
    """The status of the first request a client makes on ``transport`` (for SSE, the GET of the stream)."""
    async with httpx2.AsyncClient(timeout=10) as http:
        if transport == "sse":
            async with http.stream("GET", url, headers=headers) as response:
                return response.status_code
        return (await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **headers})).status_code


def serve_once(*flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The server, started and given no client (stdin at EOF): it exits at once, or refuses to start."""
    return subprocess.run(
        [sys.executable, "-m", "server", "serve", *flags],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **(env or {})},
    )


class StdioServer:
    """``python -m server serve`` on pipes, in its own session so the test owns its pid: lines in,
    newline-delimited JSON-RPC frames out. Its stderr is kept for :meth:`finish` when asked for."""

    def __init__(self, root: Path, cwd: Path, *, keep_stderr: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--root", str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL,
            cwd=cwd,
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)},
            start_new_session=True,
        )

    def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        """Send ``message`` as a JSON-RPC 2.0 frame."""
        self.send_line(json.dumps({"jsonrpc": "2.0", **message}))

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the server closed stdout"
        return json.loads(line)

    def request(self, id_: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a request; its reply, passing over the notifications that come first."""
        self.send({"id": id_, "method": method, "params": params})
        while True:
            message = self.receive()
            if message.get("id") == id_:
                return message

    def initialize(self) -> None:
        """The hand-shake a client opens with, so that tool calls are served."""
        self.request(0, "initialize", INITIALIZE_PARAMS)
        self.send({"method": "notifications/initialized"})

    def finish(self) -> str:
        """Close stdin; the server exits. Its stderr (empty unless kept)."""
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0
        return (err or b"").decode()

    def close(self) -> None:
        """Kill the server if it still runs, and close the pipes without reading what is left in them."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class ServerProcess:
    """``python -m server serve ...`` as a real subprocess, its stderr collected by a thread.

    :meth:`line` blocks until the server has logged a line containing a given text (its URL,
    say), so a test waits on the server's own word that it is ready.
    """

    def __init__(self, *flags: str, env: dict[str, str], cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", *flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **env},
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
