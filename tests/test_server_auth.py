"""SSE and HTTP always need a token: one the server makes and keeps when none is given, ``--no-auth``
only on loopback; and no server secret reaches what the server starts (supervisors, jobs)."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx2
import pytest
from helpers import ServerProcess, first_status, serve_once
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from server import config

SECRET = "do-not-leak-0123456789"
LEAK_CHECK = "env | grep -c AGENT_JOBS_TOKEN; env | grep -F " + SECRET + "; echo checked"


async def _call(url: str, transport: str, headers: dict[str, str], tool: str, args: dict) -> dict:
    if transport == "sse":
        async with Client(sse_client(url, headers=headers), mode="legacy") as client:
            result = await client.call_tool(tool, args)
    else:
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
        async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            result = await client.call_tool(tool, args)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def _token_file(state_home: Path) -> Path:
    return state_home / "agent-jobs" / "token"


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_without_a_configured_token_the_server_makes_one(http_server, state_home: Path, transport):
    async with http_server(transport) as service:
        path = _token_file(state_home)
        token = path.read_text().strip()
        assert len(token) >= 40 and service.cfg.token == token and service.cfg.token_file == str(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        url = service.urls[transport]
        assert await first_status(url, transport, {}) == 401
        assert await first_status(url, transport, {"Authorization": "Bearer not-it"}) == 401
        assert await first_status(url, transport, {"Authorization": f"Bearer {token}"}) == 200
        payload = await _call(url, transport, {"Authorization": f"Bearer {token}"}, "run_job", {"command": "echo in"})
        assert payload["final_snapshot"]["stdout_tail"] == "in\n"


async def test_the_made_token_is_kept_for_the_next_start(http_server, state_home: Path):
    async with http_server("streamable-http") as first:
        token = first.cfg.token
    async with http_server("streamable-http") as second:
        assert second.cfg.token == token
        headers = {"Authorization": f"Bearer {token}"}
        assert await first_status(second.urls["streamable-http"], "streamable-http", headers) == 200
    assert _token_file(state_home).read_text().strip() == token


def test_token_file_open_to_others_is_refused(state_home: Path):
    path = _token_file(state_home)
    config.parse(["--transport", "sse"], {"XDG_STATE_HOME": str(state_home)})  # makes it
    path.chmod(0o644)
    with pytest.raises(config.ConfigError, match=str(path)):
        config.parse(["--transport", "sse"], {"XDG_STATE_HOME": str(state_home)})


def test_an_open_token_folder_of_ours_is_tightened(state_home: Path):
    folder = _token_file(state_home).parent
    folder.mkdir(parents=True, mode=0o755)
    folder.chmod(0o755)
    cfg = config.parse(["--transport", "sse"], {"XDG_STATE_HOME": str(state_home)})
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert cfg.token == _token_file(state_home).read_text().strip()


def test_token_path_follows_the_environment_given(tmp_path: Path):
    env = {"HOME": str(tmp_path / "home")}
    cfg = config.parse(["--transport", "streamable-http"], env)
    assert cfg.token_file == str(tmp_path / "home" / ".local" / "state" / "agent-jobs" / "token")
    stdio = config.parse([], {"XDG_STATE_HOME": str(tmp_path / "state")})
    assert stdio.token is None and not (tmp_path / "state").exists()  # stdio: no token, no file


async def test_no_auth_on_loopback_serves_without_a_token(http_server, state_home: Path):
    async with http_server("sse,streamable-http", "--no-auth") as service:
        assert service.cfg.token is None
        for transport in ("sse", "streamable-http"):
            assert await first_status(service.urls[transport], transport, {}) == 200
    assert not state_home.exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_no_auth_off_loopback_is_refused(state_home: Path, host: str):
    env = {"XDG_STATE_HOME": str(state_home)}
    done = serve_once("--transport", "streamable-http", "--host", host, "--no-auth", env=env)
    assert done.returncode == 2
    assert "--no-auth" in done.stderr and host in done.stderr
    assert done.stdout == ""


def test_no_auth_with_a_token_is_refused(tmp_path: Path):
    (tmp_path / "t").write_text("x\n")
    done = serve_once("--transport", "sse", "--no-auth", "--token-file", str(tmp_path / "t"), env={})
    assert done.returncode == 2 and "--no-auth" in done.stderr and "--token-file" in done.stderr


def test_a_wildcard_bind_without_a_token_gets_the_made_one(state_home: Path):
    cfg = config.parse(["--transport", "sse", "--host", "0.0.0.0"], {"XDG_STATE_HOME": str(state_home)})
    assert cfg.token == _token_file(state_home).read_text().strip()


def test_the_server_says_where_the_token_is_and_how_to_connect(job_root: Path, state_home: Path):
    env = {"XDG_STATE_HOME": str(state_home)}
    flags = ("--transport", "streamable-http", "--port", "0", "--root", str(job_root))
    with ServerProcess(*flags, env=env) as server:
        url = server.line("serving streamable-http at").rsplit(" ", 1)[1]
        path = _token_file(state_home)
        assert str(path) in server.line("the bearer token is in")
        hint = server.line("claude mcp add")
        assert f"--transport http agent-jobs {url}" in hint
        assert f'--header "Authorization: Bearer $(cat {path})"' in hint
        assert path.read_text().strip() not in "\n".join(server.lines)  # the token itself is never logged


async def test_the_token_never_reaches_a_job_over_stdio(stdio_server):
    async with Client(stdio_server(env={"AGENT_JOBS_TOKEN": SECRET}), mode="legacy") as client:
        result = await client.call_tool("run_job", {"command": LEAK_CHECK})
    assert result.structured_content["final_snapshot"]["stdout_tail"] == "0\nchecked\n"


async def test_the_token_never_reaches_a_job_over_http(job_root: Path, state_home: Path):
    env = {"AGENT_JOBS_TOKEN": SECRET, "XDG_STATE_HOME": str(state_home)}
    flags = ("--transport", "sse,streamable-http", "--port", "0", "--root", str(job_root))
    with ServerProcess(*flags, env=env) as server:
        for transport in ("sse", "streamable-http"):
            url = server.line(f"serving {transport} at").rsplit(" ", 1)[1]
            headers = {"Authorization": f"Bearer {SECRET}"}
            payload = await _call(url, transport, headers, "run_job", {"command": LEAK_CHECK})
            assert payload["final_snapshot"]["stdout_tail"] == "0\nchecked\n"
