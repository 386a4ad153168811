"""Running ``agent-jobs`` (this checkout's ``python -m cli``) as a person would: a process, on pipes or a pty."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from jobcore import VERBS
from server.schemas import output_schema

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES"}}
    return {**env, "PYTHONPATH": str(REPO), "AGENT_JOBS_ROOT": str(root), **extra}


def cli(root: Path, *args: str, cwd: Path, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    """``agent-jobs ARGS`` in ``cwd`` on pipes, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=cli_env(root, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def payload_of(done: subprocess.CompletedProcess[str], verb: str) -> dict[str, Any]:
    """The one JSON document a ``--json`` command printed, checked against the matching tool's schema."""
    payload = json.loads(done.stdout)
    check_schema(payload, verb)
    return payload


def check_schema(payload: dict[str, Any], verb: str) -> None:
    errors = [e.message for e in Draft202012Validator(output_schema(VERBS[verb].payload)).iter_errors(payload)]
    assert not errors, f"{verb} payload does not match the tool's output schema: {errors[:3]}"


class Terminal:
    """``agent-jobs ARGS`` on a pseudo-terminal of the given size, read as a person's screen would be."""

    def __init__(self, root: Path, *args: str, cwd: Path, cols: int = 80, **extra: str) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            cwd=cwd,
            env=cli_env(root, TERM="xterm-256color", **extra),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self.screen = b""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the program has gone and the pty is closed
            return False
        self.screen += chunk
        return bool(chunk)

    def read_until(self, text: str, timeout: float = 15.0) -> str:
        """Everything shown so far, once ``text`` is on screen (fails after ``timeout`` without it)."""
        while text.encode() not in self.screen:
            assert self._read(timeout), f"{text!r} not on screen within {timeout} s: {self.screen!r}"
        return self.screen.decode()

    def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        """The exit code and the whole screen once the program has ended."""
        while self._read(timeout):
            pass
        code = self.proc.wait(timeout=timeout)
        os.close(self.master)
        return code, self.screen.decode()
