"""``mcp.json.example`` works: each entry, stdio or remote, reaches the server and lists the tools."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = json.loads((REPO / "mcp.json.example").read_text())
TOKEN = "example-token"


def _entries() -> list[tuple[str, str, dict[str, Any]]]:
    return [(shape, name, entry) for shape in ("mcpServers", "servers") for name, entry in EXAMPLE[shape].items()]


def _stdio_params(entry: dict[str, Any], job_root: Path, cwd: Path) -> StdioServerParameters:
    command, args = entry["command"], list(entry["args"])
    if command == "agent-jobs" and shutil.which("agent-jobs") is None:  # not pip-installed here: same entry point
        command, args = sys.executable, ["-m", "server", *args]
    return StdioServerParameters(
        command=command,
        args=[*args, "--root", str(job_root)],
        env={"PYTHONPATH": str(REPO), **entry.get("env", {})},
        cwd=str(cwd),
    )


def _headers(entry: dict[str, Any]) -> dict[str, str]:
    return {
        k: v.replace("${AGENT_JOBS_TOKEN}", TOKEN).replace("${input:agent-jobs-token}", TOKEN)
        for k, v in entry.get("headers", {}).items()
    }


@pytest.mark.parametrize(("shape", "name", "entry"), _entries(), ids=[f"{s}-{n}" for s, n, _ in _entries()])
async def test_example_entry_reaches_the_server(shape, name, entry, job_root, server_cwd, http_server):
    kind = entry.get("type", "stdio")
    if kind == "stdio":
        async with Client(_stdio_params(entry, job_root, server_cwd), mode="legacy") as client:
            tools = (await client.list_tools()).tools
    else:
        async with http_server("sse,streamable-http", env={"AGENT_JOBS_TOKEN": TOKEN}) as service:
            url = service.base_url + urlsplit(entry["url"]).path  # the example's path on this test's port
            headers = _headers(entry)
            assert headers["Authorization"] == f"Bearer {TOKEN}"
            if kind == "sse":
                async with Client(sse_client(url, headers=headers), mode="legacy") as client:
                    tools = (await client.list_tools()).tools
            else:
                http = httpx2.AsyncClient(headers=headers)
                async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
                    tools = (await client.list_tools()).tools
    assert "run_job" in {t.name for t in tools}


def test_example_shapes():
    assert set(EXAMPLE) == {"mcpServers", "inputs", "servers"}
    assert {e.get("type", "stdio") for e in EXAMPLE["mcpServers"].values()} == {"stdio", "http", "sse"}
    assert EXAMPLE["servers"]["agent-jobs"]["type"] == "stdio"
