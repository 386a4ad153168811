"""The server is SIGKILLed while a wait is in flight; the job finishes regardless, and a
new server on the same root reports it ``exited`` with its output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from helpers import Fifo, wait_exit
from mcp import Client

REPO = Path(__file__).resolve().parent.parent


class RawStdio:
    """The server as a bare subprocess speaking newline-delimited JSON-RPC, so the test owns its pid."""

    def __init__(self, root: Path, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--root", str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)},
            start_new_session=True,
        )

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode())
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the server closed stdout"
        return json.loads(line)

    def request(self, id_: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.send({"id": id_, "method": method, "params": params})
        while True:
            message = self.receive()
            if message.get("id") == id_:
                return message


def test_server_killed_during_wait_job_finishes_and_new_server_reports_it(job_root: Path, server_cwd: Path, tmp_path):
    fifo = Fifo(tmp_path / "release")
    server = RawStdio(job_root, server_cwd)
    try:
        server.request(
            1,
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}},
        )
        server.send({"method": "notifications/initialized"})
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
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        for stream in (server.proc.stdin, server.proc.stdout):
            if stream is not None:
                stream.close()

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
    server = RawStdio(job_root, server_cwd)
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init},
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
