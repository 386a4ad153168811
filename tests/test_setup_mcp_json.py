"""``mcp.json.example`` holds one valid block per client, and each entry, stdio or remote, lists the tools."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from helpers import TOOLS
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = json.loads((REPO / "mcp.json.example").read_text())
TOKEN = "example-token"

#: Where each client's file keeps its servers, and how it writes the token taken from elsewhere.
SERVERS_KEY = {"claude-code": "mcpServers", "claude-desktop": "mcpServers", "cursor": "mcpServers", "vscode": "servers"}
TOKEN_REFERENCE = {
    "claude-code": "${AGENT_JOBS_TOKEN}",
    "cursor": "${env:AGENT_JOBS_TOKEN}",
    "vscode": "${input:agent-jobs-token}",
}


def _entries(local: bool) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (client, name, entry)
        for client, key in SERVERS_KEY.items()
        for name, entry in EXAMPLE[client][key].items()
        if ("command" in entry) == local
    ]


def _ids(entries: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return [f"{client}-{name}" for client, name, _ in entries]


def test_one_block_per_client():
    assert set(EXAMPLE) == {"_comment", *SERVERS_KEY}
    for client, key in SERVERS_KEY.items():
        assert key in EXAMPLE[client], client
        for entry in EXAMPLE[client][key].values():
            assert "AGENT_JOBS_MAX_WAIT_SECONDS" not in entry.get("env", {})  # its default: noise


def test_claude_desktop_has_only_local_servers():
    assert all("command" in entry for entry in EXAMPLE["claude-desktop"]["mcpServers"].values())


def test_vscode_asks_for_the_token_it_uses():
    ids = {i["id"] for i in EXAMPLE["vscode"]["inputs"]}
    assert "agent-jobs-token" in ids


@pytest.mark.parametrize(("client", "name", "entry"), _entries(local=True), ids=_ids(_entries(local=True)))
async def test_stdio_entry_lists_the_tools(client, name, entry, job_root, server_cwd, agent_jobs_bin):
    params = StdioServerParameters(
        command=entry["command"],
        args=entry["args"],
        env={"PATH": f"{agent_jobs_bin}{os.pathsep}{os.environ['PATH']}", "AGENT_JOBS_ROOT": str(job_root)},
        cwd=str(server_cwd),
    )
    async with Client(params, mode="legacy") as client_session:
        tools = (await client_session.list_tools()).tools
    assert {t.name for t in tools} == TOOLS


@pytest.mark.parametrize(("client", "name", "entry"), _entries(local=False), ids=_ids(_entries(local=False)))
async def test_remote_entry_with_the_clients_token_syntax_lists_the_tools(client, name, entry, http_server):
    reference = TOKEN_REFERENCE[client]
    assert entry["headers"]["Authorization"] == f"Bearer {reference}"
    headers = {k: v.replace(reference, TOKEN) for k, v in entry["headers"].items()}
    async with http_server("streamable-http", env={"AGENT_JOBS_TOKEN": TOKEN}) as service:
        url = service.base_url + urlsplit(entry["url"]).path  # the example's path on this test's port
        http = httpx2.AsyncClient(headers=headers)
        async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client_session:
            tools = (await client_session.list_tools()).tools
    assert {t.name for t in tools} == TOOLS
