"""``agent-jobs`` as a person first meets it: ``--version``, a mistyped flag, a terminal, Ctrl-C and SIGTERM."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import termios
from importlib.metadata import version
from pathlib import Path

from server.cli import TERMINAL_NOTICE

REPO = Path(__file__).resolve().parent.parent


def _server(*args: str) -> list[str]:
    return [sys.executable, "-m", "server", *args]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "XDG_STATE_HOME": str(tmp_path / "state")}


def test_version_prints_the_package_version(tmp_path: Path):
    done = subprocess.run(_server("--version"), env=_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"agent-jobs {version('agent-jobs')}\n"


def test_an_unknown_serve_flag_shows_the_serve_usage(tmp_path: Path):
    done = subprocess.run(_server("serve", "--bogus"), env=_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: agent-jobs serve ")
    assert "agent-jobs serve: error: unrecognized arguments: --bogus" in done.stderr


def test_no_command_shows_the_top_usage(tmp_path: Path):
    done = subprocess.run(_server(), env=_env(tmp_path), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: agent-jobs [-h] [--version] COMMAND")


def test_stdio_without_a_terminal_says_nothing_extra_and_ends_with_stdin(tmp_path: Path, job_root: Path):
    done = subprocess.run(
        _server("serve", "--root", str(job_root)),
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert TERMINAL_NOTICE not in done.stderr
    assert done.stdout == ""


def _read_until(fd: int, needle: bytes, timeout: float = 30.0) -> bytes:
    got = b""
    while needle not in got:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no {needle!r} within {timeout} s; got {got!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"end of output before {needle!r}; got {got!r}"
        got += chunk
    return got


def _own_terminal() -> None:
    """In the child: make stdin (the pty) the controlling terminal, so ``\\x03`` on it sends SIGINT."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_stdio_in_a_terminal_says_what_it_is_and_stops_on_ctrl_c(tmp_path: Path, job_root: Path):
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            _server("serve", "--root", str(job_root)),
            env=_env(tmp_path),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_own_terminal,
        )
        os.close(slave)
        try:
            out = _read_until(master, TERMINAL_NOTICE.encode())
            assert out.count(b"this is an MCP server") == 1
            os.write(master, b"\x03")
            assert proc.wait(timeout=2) == 128 + signal.SIGINT
        finally:
            proc.kill()
            proc.wait()
    finally:
        os.close(master)


def _http_server(tmp_path: Path, job_root: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        _server("serve", "--transport", "streamable-http", "--port", "0", "--root", str(job_root)),
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    _read_until(proc.stderr.fileno(), b"serving streamable-http at")
    return proc


def test_sigterm_stops_the_http_server(tmp_path: Path, job_root: Path):
    proc = _http_server(tmp_path, job_root)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=2)
    finally:
        proc.kill()
        proc.wait()


def test_sigint_stops_the_http_server(tmp_path: Path, job_root: Path):
    proc = _http_server(tmp_path, job_root)
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=2) == 0
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_stops_the_stdio_server(tmp_path: Path, job_root: Path):
    proc = subprocess.Popen(
        _server("serve", "--root", str(job_root)),
        env=_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        _read_until(proc.stderr.fileno(), b"job store:")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=2) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            assert pipe is not None
            pipe.close()
