"""The server is SIGKILLed while a wait is in flight; the job finishes regardless, and a
new server on the same root reports it ``exited`` with its output."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
from helpers import INITIALIZE_PARAMS, REPO, Fifo, StdioServer, wait_exit
from mcp import Client


def test_server_killed_during_wait_job_finishes_and_new_server_reports_it(job_root: Path, server_cwd: Path, tmp_path):
    fifo = Fifo(tmp_path / "release")
    server = StdioServer(job_root, server_cwd)
    try:
        server.initialize()
        command = f"echo before; read x < {fifo}; echo after $x"
        run = server.request(2, "tools/call", {"name": "run_job", "arguments": {"command": command, "wait_seconds": 0}})
        job_id = run["result"]["structuredContent"]["job_id"]

        server.send(
            {
                "id": 3,
                "method": "tools/call",
                "params": {"name": "wait", "arguments": {"job_id": job_id}, "_meta": {"progressToken": "w"}},
            }
        )
        progress = server.receive()  # the wait is being served: it reports progress
        assert progress["method"] == "notifications/progress", progress
        assert progress["params"]["progressToken"] == "w"

        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
    finally:
        server.close()

    state = json.loads((job_root / job_id / "state.json").read_text())
    assert state["job"]["status"] == "running"  # killing the server did not touch the job
    fifo.write("go")
    wait_exit(state["supervisor_pid"])

    async def reattach() -> dict[str, Any]:
        from mcp import StdioServerParameters

        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "server", "serve", "--root", str(job_root)],
            env={"PYTHONPATH": str(REPO)},
            cwd=str(server_cwd),
        )
        async with Client(params, mode="legacy") as client:
            result = await client.call_tool("wait", {"job_id": job_id, "wait_seconds": 10})
            return result.structured_content or {}

    waited = anyio.run(reattach)
    assert waited["state"] == "exited"
    assert waited["exit_code"] == 0
    assert waited["final_snapshot"]["stdout_tail"] == "before\nafter go\n"


def test_stdout_carries_frames_only_and_stdin_eof_stops_the_server(job_root: Path, server_cwd: Path):
    server = StdioServer(job_root, server_cwd)
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INITIALIZE_PARAMS},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "run_job", "arguments": {"x": 1}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_jobs", "arguments": {}}},
    ]
    for message in messages:
        server.send({k: v for k, v in message.items() if k != "jsonrpc"})
    frames = [server.receive() for _ in range(3)]  # every stdout line is a JSON-RPC frame
    assert [f["id"] for f in frames] == [1, 2, 3]
    assert frames[1]["result"]["structuredContent"]["error"]["code"] == "invalid_input"
    out, _ = server.proc.communicate(timeout=30)  # closes stdin: the server exits, printing nothing more
    assert server.proc.returncode == 0
    assert out == b""
