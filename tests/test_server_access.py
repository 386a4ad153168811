"""Token, Host and Origin checks on SSE and HTTP; settings that stop the server at start."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from helpers import INITIALIZE, MCP_HEADERS, first_status, serve_once
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from server import config
from server.access import allowed_hosts

TOKEN = "s3cret-token"


async def _status(service, transport: str, headers: dict[str, str]) -> int:
    return await first_status(service.urls[transport], transport, headers)


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_token_host_and_origin_are_checked(http_server, transport):
    async with http_server("sse,streamable-http", env={"AGENT_JOBS_TOKEN": TOKEN}) as service:
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert await _status(service, transport, {}) == 401
        assert await _status(service, transport, {"Authorization": "Bearer wrong"}) == 401
        assert await _status(service, transport, {"Authorization": TOKEN}) == 401  # not a bearer header
        assert await _status(service, transport, {**good, "Host": "evil.example:80"}) == 421
        assert await _status(service, transport, {**good, "Host": "127.0.0.1"}) == 421  # loopback, but no port
        assert await _status(service, transport, {**good, "Origin": "http://evil.example"}) == 403
        assert await _status(service, transport, {**good, "Origin": f"http://127.0.0.1:{service.port + 1}"}) == 403
        assert await _status(service, transport, {**good, "Origin": f"http://127.0.0.1:{service.port}"}) == 200
        assert await _status(service, transport, {**good, "Host": f"localhost:{service.port}"}) == 200


async def test_messages_endpoint_needs_the_token_too(http_server):
    async with http_server("sse", env={"AGENT_JOBS_TOKEN": TOKEN}) as service, httpx2.AsyncClient(timeout=10) as http:
        url = f"{service.base_url}/messages/?session_id=0123456789abcdef0123456789abcdef"
        assert (await http.post(url, json=INITIALIZE)).status_code == 401


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_right_token_works_with_the_sdk_client(http_server, transport):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http_server(transport, env={"AGENT_JOBS_TOKEN": TOKEN}) as service:
        url = service.urls[transport]
        if transport == "sse":
            target = sse_client(url, headers=headers)
            async with Client(target, mode="legacy") as client:
                result = await client.call_tool("run_job", {"command": "echo authed"})
        else:
            http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
            async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
                result = await client.call_tool("run_job", {"command": "echo authed"})
        assert result.structured_content["final_snapshot"]["stdout_tail"] == "authed\n"


async def test_allowed_origin_and_host_flags(http_server):
    flags = ("--allowed-origin", "http://localhost:5173", "--allowed-host", "jobs.internal:*", "--no-auth")
    async with http_server("streamable-http", *flags) as service:
        assert await _status(service, "streamable-http", {"Origin": "http://localhost:5173"}) == 200
        assert await _status(service, "streamable-http", {"Origin": "http://localhost:5174"}) == 403
        assert await _status(service, "streamable-http", {"Host": "jobs.internal:1234"}) == 200
        assert await _status(service, "streamable-http", {"Origin": "http://jobs.internal:1234"}) == 200  # its own
        assert await _status(service, "streamable-http", {}) == 200  # --no-auth: open on loopback


def test_wildcard_bind_accepts_this_machines_names_only():
    cfg = config.parse(["--transport", "sse", "--host", "0.0.0.0", "--port", "9000"], {"AGENT_JOBS_TOKEN": "t"})
    hosts = allowed_hosts(cfg, 9000)
    assert "127.0.0.1:9000" in hosts and "localhost:9000" in hosts
    assert all(h.endswith(":9000") for h in hosts)
    assert not any(h.startswith("0.0.0.0") for h in hosts)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGENT_JOBS_MAX_WAIT_SECONDS", "soon"),
        ("AGENT_JOBS_MAX_WAIT_SECONDS", "-1"),
        ("AGENT_JOBS_MAX_WAIT_SECONDS", "inf"),
        ("AGENT_JOBS_DEFAULT_WAIT_SECONDS", "ten"),
        ("AGENT_JOBS_DEFAULT_WAIT_SECONDS", "nan"),
        ("AGENT_JOBS_DEFAULT_WAIT_SECONDS", "100"),  # above the default cap of 55
        ("AGENT_JOBS_RETENTION", "a month"),
    ],
)
def test_bad_wait_or_retention_variable_stops_the_server(name, value):
    done = serve_once(env={name: value})
    assert done.returncode != 0
    assert name in done.stderr
    assert done.stdout == ""


def test_bad_flags_stop_the_server(tmp_path: Path):
    assert "--token-file" in serve_once("--transport", "sse", "--token-file", str(tmp_path / "missing")).stderr
    (tmp_path / "empty").write_text("\n")
    assert "empty" in serve_once("--transport", "sse", "--token-file", str(tmp_path / "empty")).stderr
    assert "unknown transport" in serve_once("--transport", "websocket").stderr
    assert "--allowed-host" in serve_once("--transport", "sse", "--allowed-host", "example.com").stderr


def test_token_file_is_read(tmp_path: Path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    cfg = config.parse(["--transport", "sse", "--host", "::", "--token-file", str(tmp_path / "token")], {})
    assert cfg.token == TOKEN


def test_listening_socket_gets_tcp_nodelay(job_root: Path):
    """asyncio sets TCP_NODELAY only on sockets created with proto TCP; without it each small SSE
    frame waits for a delayed ACK (about 40 ms a round trip, measured)."""
    import socket

    from server.app import bind

    for host in ("127.0.0.1", "localhost"):
        sock = bind(host, 0)
        try:
            assert sock.proto == socket.IPPROTO_TCP
        finally:
            sock.close()


async def test_wildcard_bind_with_a_token_serves(http_server):
    import socket

    env = {"AGENT_JOBS_TOKEN": TOKEN}
    async with http_server("streamable-http", "--host", "0.0.0.0", env=env) as service:
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert await _status(service, "streamable-http", {}) == 401
        assert await _status(service, "streamable-http", good) == 200
        own_name = f"{socket.gethostname()}:{service.port}"
        assert await _status(service, "streamable-http", {**good, "Host": own_name}) == 200
        assert await _status(service, "streamable-http", {**good, "Host": f"rebound.example:{service.port}"}) == 421


async def test_own_origin_is_accepted_as_the_conformance_suite_sends_it(http_server):
    """The requests of the MCP conformance suite's dns-rebinding-protection scenario, with the Host
    and Origin a browser on the server's own address sends, then a foreign Host and a foreign Origin."""
    async with http_server("streamable-http", "--no-auth") as service, httpx2.AsyncClient(timeout=10) as http:
        url = service.urls["streamable-http"]
        own = f"127.0.0.1:{service.port}"
        headers = {**MCP_HEADERS, "Host": own, "Origin": f"http://{own}", "MCP-Protocol-Version": "2025-11-25"}
        init = await http.post(url, json=INITIALIZE, headers=headers)
        assert init.status_code == 200, init.text
        session = {"Mcp-Session-Id": init.headers["mcp-session-id"]}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url, json=initialized, headers={**headers, **session})).status_code == 202
        https_own = {**headers, "Origin": f"https://localhost:{service.port}"}
        assert (await http.post(url, json=INITIALIZE, headers=https_own)).status_code == 200

        evil = "evil.example.com"
        rebound = await http.post(url, json=INITIALIZE, headers={**headers, "Host": evil, "Origin": f"http://{evil}"})
        assert rebound.status_code == 421
        foreign = await http.post(url, json=INITIALIZE, headers={**headers, "Origin": f"http://{evil}"})
        assert foreign.status_code == 403
        other = {**headers, "Origin": f"http://127.0.0.1:{service.port + 1}"}
        other_port = await http.post(url, json=INITIALIZE, headers=other)
        assert other_port.status_code == 403
