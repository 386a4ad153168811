"""MCP server figures, each beside the SDK's own trivial server measured the same way in the same run.

- cold start over stdio: process spawn to the first ``tools/list`` answer (raw JSON-RPC on pipes);
- round trip of ``snapshot`` on stdio, SSE and streamable HTTP (the SDK client, handshake era)
  beside a trivial ``echo`` tool of a bare ``MCPServer`` on the same transport;
- ``run_job`` of ``true`` end to end over stdio beside a bare tool that runs ``true`` itself.

Every server runs as its own process; ours and the baseline are measured alternately.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .table import Row

REPO = Path(__file__).resolve().parent.parent
COLD_ROUNDS = 7
RTT_WARMUP = 20
RTT_ROUNDS = 200
RUN_ROUNDS = 20

#: The SDK's trivial server: what any MCPServer costs, with nothing of ours in it.
BASELINE_SERVER = r"""
import socket, sys
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("baseline", log_level="WARNING")

@mcp.tool()
async def echo(x: int) -> int:
    return x

@mcp.tool()
async def run_true() -> int:
    import anyio
    return (await anyio.run_process(["sh", "-c", "true"], check=False)).returncode

if sys.argv[1] == "stdio":
    mcp.run("stdio")
else:
    import uvicorn

    app = mcp.sse_app() if sys.argv[1] == "sse" else mcp.streamable_http_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # proto 6: asyncio sets NODELAY
    sock.bind(("127.0.0.1", 0))
    print(f"serving at http://127.0.0.1:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), "PYTHONPATH": str(REPO)}


class _Servers:
    """The two server command lines, over a scratch job store and a scratch baseline script."""

    def __init__(self, work: Path) -> None:
        self.root = work / "jobs"
        self.baseline_script = work / "baseline_server.py"
        self.baseline_script.write_text(BASELINE_SERVER)
        #: Our HTTP transports always want a token: measured as users run them, with one.
        self.token = secrets.token_urlsafe(32)
        self.token_file = work / "token"
        self.token_file.write_text(self.token)
        self.token_file.chmod(0o600)

    def ours(self, *flags: str) -> list[str]:
        return [sys.executable, "-m", "server", "serve", "--root", str(self.root), "--log-level", "warning", *flags]

    def baseline(self, transport: str) -> list[str]:
        return [sys.executable, str(self.baseline_script), transport]


def _cold_start(cmd: list[str]) -> float:
    """Spawn to the answer of the first ``tools/list``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())
    assert proc.stdin is not None and proc.stdout is not None
    lines = [INIT, {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    lines.append({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in lines).encode())
    proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{cmd} exited before answering tools/list")
        if json.loads(line).get("id") == 2:
            took = time.perf_counter() - t0
            break
    proc.stdin.close()
    proc.wait(timeout=10)
    proc.stdout.close()
    return took


@asynccontextmanager
async def _http_process(cmd: list[str]) -> AsyncIterator[str]:
    """Start an HTTP server process; yield its base URL (read from the line it logs once listening)."""
    pipes: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(cmd, env=_env(), **pipes)
    assert proc.stderr is not None
    try:
        deadline = time.monotonic() + 30
        buf = b""
        while (match := re.search(rb"at (http://127\.0\.0\.1:\d+)", buf)) is None:
            ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(proc.stderr.fileno(), 4096) if ready else b""
            if not chunk:
                raise RuntimeError(f"{cmd} did not start: {buf.decode(errors='replace')}")
            buf += chunk
        yield match.group(1).decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()


async def _round_trips(client: Any, name: str, args: dict[str, Any]) -> float:
    for _ in range(RTT_WARMUP):
        await client.call_tool(name, args)
    samples = []
    for _ in range(RTT_ROUNDS):
        t0 = time.perf_counter()
        result = await client.call_tool(name, args)
        samples.append(time.perf_counter() - t0)
        assert not result.is_error, result
    return statistics.median(samples)


async def _measure_async(servers: _Servers) -> list[Row]:
    import httpx2
    from mcp import Client, StdioServerParameters
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    def stdio(cmd: list[str]) -> Client:
        return Client(StdioServerParameters(command=cmd[0], args=cmd[1:], env=_env()), mode="legacy")

    rows: list[Row] = []
    async with stdio(servers.ours()) as ours, stdio(servers.baseline("stdio")) as base:
        job = (await ours.call_tool("run_job", {"command": "echo hello"})).structured_content
        snapshot = {"job_id": job["job_id"]}
        ours_rtt = await _round_trips(ours, "snapshot", snapshot)
        base_rtt = await _round_trips(base, "echo", {"x": 1})
        rows.append(Row("round trip: snapshot over stdio (median)", _ms(ours_rtt), _ms(base_rtt), _TRIVIAL, "< 2x"))

        async def timed(call: Callable[[], Awaitable[Any]]) -> float:
            t0 = time.perf_counter()
            await call()
            return time.perf_counter() - t0

        ours_run, base_run = [], []
        for _ in range(RUN_ROUNDS):
            ours_run.append(await timed(lambda: ours.call_tool("run_job", {"command": "true"})))
            base_run.append(await timed(lambda: base.call_tool("run_true", {})))
        rows.append(
            Row(
                "run_job of `true`, call to exited result, stdio (median)",
                _ms(statistics.median(ours_run)),
                _ms(statistics.median(base_run)),
                "bare MCPServer tool running sh -c true itself",
                "< 50 ms",
            )
        )

    for label, transport, path in (("SSE", "sse", "/sse"), ("streamable HTTP", "streamable-http", "/mcp")):
        async with (
            _http_process(
                servers.ours("--transport", transport, "--port", "0", "--token-file", str(servers.token_file))
            ) as ours_url,
            _http_process(servers.baseline(transport)) as base_url,
        ):

            def target(url: str, headers: dict[str, str], transport: str = transport, path: str = path) -> Any:
                if transport == "sse":
                    return sse_client(url + path, headers=headers)
                return streamable_http_client(url + path, http_client=httpx2.AsyncClient(headers=headers))

            bearer = {"Authorization": f"Bearer {servers.token}"}
            async with (
                Client(target(ours_url, bearer), mode="legacy") as ours,
                Client(target(base_url, {}), mode="legacy") as base,
            ):
                ours_rtt = await _round_trips(ours, "snapshot", snapshot)
                base_rtt = await _round_trips(base, "echo", {"x": 1})
        metric = f"round trip: snapshot over {label} (median)"
        rows.append(Row(metric, _ms(ours_rtt), _ms(base_rtt), _TRIVIAL, "< 2x"))
    return rows


_TRIVIAL = "bare MCPServer echo tool, same transport"


def measure() -> list[Row]:
    import anyio

    with tempfile.TemporaryDirectory(prefix="agent-jobs-bench-") as tmp:
        servers = _Servers(Path(tmp))
        ours, base = [], []
        for _ in range(COLD_ROUNDS):  # alternate, so drift hits both alike
            ours.append(_cold_start(servers.ours()))
            base.append(_cold_start(servers.baseline("stdio")))
        rows = [
            Row(
                "cold start: spawn to first tools/list, stdio (median)",
                _ms(statistics.median(ours)),
                _ms(statistics.median(base)),
                "bare MCPServer with one tool",
                "< baseline + 200 ms",
            )
        ]
        rows += anyio.run(_measure_async, servers)
    return rows


if __name__ == "__main__":
    from .table import render

    print(render(measure()))
