"""Fixtures shared by the test modules: a job store per test that leaves no process behind,
and ways to reach the MCP server over each transport (a real subprocess for stdio, a real
uvicorn on a real socket for SSE and streamable HTTP)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
INSPECTOR_DIR = REPO / "tests" / "inspector"
INSPECTOR = INSPECTOR_DIR / "node_modules" / ".bin" / "mcp-inspector"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _kill_leftovers(root: Path) -> None:
    """SIGKILL the supervisor and every process of each job under ``root`` not ended: its
    group, and what left it (found by the job's marker), such as a test that failed leaves."""
    import json

    from jobcore.supervisor import procs

    if not root.is_dir():
        return
    for state_file in root.glob("*/state.json"):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        if state.get("job", {}).get("status") in ("exited", "killed", "failed"):
            continue
        supervisor, pgid = state.get("supervisor_pid"), state.get("pid")
        if isinstance(supervisor, int) and supervisor > 1:
            try:
                os.kill(supervisor, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        procs.signal_job(state_file.parent.name, pgid if isinstance(pgid, int) and pgid > 1 else None, signal.SIGKILL)


@pytest.fixture
def job_root(tmp_path: Path):
    """A fresh job store for one test; at the end, whatever its jobs still run is SIGKILLed."""
    root = tmp_path / "jobs"
    yield root
    _kill_leftovers(root)


@pytest.fixture
def server_cwd(tmp_path: Path) -> Path:
    cwd = tmp_path / "work"
    cwd.mkdir(exist_ok=True)
    return cwd


@pytest.fixture
def stdio_server(job_root: Path, server_cwd: Path) -> Callable[..., Any]:
    """``stdio_server(*flags, env={...})`` -> ``StdioServerParameters`` for ``python -m server serve``.

    The SDK's stdio client passes only a minimal environment; what the server needs is passed here.
    """
    from mcp import StdioServerParameters

    def make(*flags: str, env: dict[str, str] | None = None) -> StdioServerParameters:
        return StdioServerParameters(
            command=sys.executable,
            args=["-m", "server", "serve", "--root", str(job_root), *flags],
            env={"PYTHONPATH": str(REPO), **(env or {})},
            cwd=str(server_cwd),
        )

    return make


@pytest.fixture
def state_home(tmp_path: Path) -> Path:
    """``XDG_STATE_HOME`` for a server under test, so a token it makes never lands in the real home."""
    return tmp_path / "state"


@pytest.fixture
def http_server(job_root: Path, state_home: Path) -> Callable[..., Any]:
    """``async with http_server(transport, *flags, env={...}) as service:`` runs the HTTP service in this
    event loop on a free loopback port (bound before serving, so clients can connect at once).

    Without ``AGENT_JOBS_TOKEN``, ``--token-file`` or ``--no-auth`` the service makes its own token,
    as it does in use; ``helpers.auth_headers`` gives the header a client then needs.
    """
    from server import config
    from server.app import HttpService

    @asynccontextmanager
    async def run(
        transport: str = "sse,streamable-http", *flags: str, env: dict[str, str] | None = None
    ) -> AsyncIterator[HttpService]:
        import anyio

        argv = ["--transport", transport, "--port", "0", "--root", str(job_root), *flags]
        cfg = config.parse(argv, {"XDG_STATE_HOME": str(state_home), **(env or {})})
        service = HttpService(cfg)
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.serve)
            try:
                yield service
            finally:
                service.stop()

    return run


@pytest.fixture
def agent_jobs_bin(tmp_path: Path) -> Path:
    """A folder holding an ``agent-jobs`` command that runs this checkout's server, to put first on ``PATH``.

    Commands copied from the README or ``mcp.json.example`` then run the code under test, not an installed copy.
    """
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "agent-jobs"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m server "$@"\n')
    script.chmod(0o755)
    return folder


#: The oldest Node the Inspector CLI was checked to work on (its package asks for 22.19; npm only warns on 20).
NODE_MIN = (20, 0)


def _node_problem() -> str | None:
    """Why the Inspector cannot run here, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed (the MCP Inspector tests need Node 20 or later)"
    done = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30, check=False)
    found = tuple(int(part) for part in re.findall(r"\d+", done.stdout)[:2])
    if done.returncode != 0 or found < NODE_MIN:
        return f"Node.js {done.stdout.strip() or '?'} is too old (the MCP Inspector tests need Node 20 or later)"
    return None


@pytest.fixture(scope="session")
def inspector_installed() -> Path:
    """The Inspector CLI, installed from the lockfile on first use; these tests are skipped without Node."""
    problem = _node_problem()
    if problem:
        pytest.skip(problem)
    if not INSPECTOR.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: it installs the MCP Inspector these tests use")
        cmd = ["npm", "ci", "--prefix", str(INSPECTOR_DIR), "--no-audit", "--no-fund", "--loglevel=error"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}"
    return INSPECTOR
