"""A message the server cannot read still gets an answer, is logged, and the server goes on serving:
nesting deeper than the JSON parser allows, lines that are not JSON or not JSON-RPC."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from helpers import INITIALIZE, StdioServer, auth_headers

from server.unreadable import members, nesting_depth


def _nested(depth: int) -> str:
    """``[[...[1]...]]``, built as text: json.dumps itself cannot write it past Python's recursion limit."""
    return "[" * depth + "1" + "]" * depth


def _call_line(request_id: int, tool: str, arguments: str) -> str:
    return (
        f'{{"jsonrpc": "2.0", "id": {request_id}, "method": "tools/call", '
        f'"params": {{"name": "{tool}", "arguments": {arguments}}}}}'
    )


@pytest.fixture
def stdio(job_root: Path, server_cwd: Path):
    server = StdioServer(job_root, server_cwd, keep_stderr=True)
    try:
        server.initialize()
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("tool", ["delete_job", "tag_job"])
def test_deep_nesting_over_stdio_is_answered_invalid_input(stdio: StdioServer, tool: str):
    stdio.send_line(_call_line(1, tool, f'{{"job_id": {_nested(1000)}}}'))
    stdio.send_line(_call_line(2, tool, f'{{"job_id": {_nested(100)}}}'))  # shallow enough to be read
    stdio.send_line(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
    # Requests are served concurrently: replies may come in any order.
    deep, shallow, listed = sorted((stdio.receive() for _ in range(3)), key=lambda reply: reply["id"])
    assert deep["id"] == 1
    assert deep["result"]["isError"] is True
    error = deep["result"]["structuredContent"]["error"]
    assert error["code"] == "invalid_input"
    assert error["message"].startswith("job_id: ") and "deep" in error["message"]
    assert json.loads(deep["result"]["content"][0]["text"]) == deep["result"]["structuredContent"]
    assert shallow["id"] == 2 and shallow["result"]["structuredContent"]["error"]["code"] == "invalid_input"
    assert listed["id"] == 3 and listed["result"]["tools"]  # still serving
    assert "unreadable message" in stdio.finish()


def test_deep_nesting_names_the_deep_argument(stdio: StdioServer):
    stdio.send_line(_call_line(7, "tag_job", f'{{"job_id": "abcd", "tags": {_nested(500)}}}'))
    reply = stdio.receive()
    assert reply["id"] == 7
    assert reply["result"]["structuredContent"]["error"]["details"] == {"field": "tags"}
    stdio.finish()


def test_unreadable_lines_that_are_not_tool_calls_get_json_rpc_errors(stdio: StdioServer):
    deep_params = f'{{"jsonrpc": "2.0", "id": "q", "method": "tools/list", "params": {{"a": {_nested(400)}}}}}'
    stdio.send_line(deep_params)
    stdio.send_line("this is not JSON")
    stdio.send_line(json.dumps({"jsonrpc": "2.0", "id": 9}))  # JSON, but neither a request nor a response
    stdio.send_line(f'{{"jsonrpc": "2.0", "method": "notifications/x", "params": {_nested(400)}}}')  # no reply
    stdio.send_line(f'{{"jsonrpc": "2.0", "id": 99, "result": {{"a": {_nested(400)}}}}}')  # a response: no reply
    stdio.send_line(json.dumps({"jsonrpc": "2.0", "id": 10, "method": "ping"}))
    replies = [stdio.receive() for _ in range(4)]
    assert [(r.get("id"), r.get("error", {}).get("code")) for r in replies] == [
        ("q", -32700),
        (None, -32700),
        (9, -32600),
        (10, None),
    ]
    assert "deep" in replies[0]["error"]["message"]
    assert replies[3]["result"] == {}
    assert stdio.finish().count("unreadable message") == 5


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_deep_nesting_over_http_is_answered(http_server, transport):
    line = _call_line(1, "delete_job", f'{{"job_id": {_nested(1000)}}}')
    async with http_server(transport) as service, httpx2.AsyncClient(timeout=10) as http:
        headers = {**auth_headers(service), "Content-Type": "application/json"}
        if transport == "streamable-http":
            headers["Accept"] = "application/json, text/event-stream"
            reply = await http.post(service.urls[transport], content=line, headers=headers)
            assert reply.status_code == 400
            assert reply.json()["error"]["code"] == -32700
            assert (await http.post(service.urls[transport], json=INITIALIZE, headers=headers)).status_code == 200
        else:
            async with http.stream("GET", service.urls["sse"], headers=auth_headers(service)) as stream:
                endpoint = None
                async for event_line in stream.aiter_lines():  # the first event names the messages endpoint
                    if event_line.startswith("data: "):
                        endpoint = service.base_url + event_line.removeprefix("data: ")
                        break
                assert endpoint is not None
                reply = await http.post(endpoint, content=line, headers=headers)
                assert reply.status_code == 400
                assert (await http.post(endpoint, json=INITIALIZE, headers=headers)).status_code == 202


def test_members_reads_the_top_level_only():
    text = '{"id": 5, "s": "a,}{[\\"", "deep": ' + _nested(5000) + ', "last": {"x": [1, 2]}}'
    assert members(text) == {"id": "5", "s": '"a,}{[\\""', "deep": _nested(5000), "last": '{"x": [1, 2]}'}
    assert nesting_depth(text) == 5001
    assert members("[1, 2]") == {} and members("not json") == {}


async def test_a_refused_http_request_is_logged(http_server, caplog: pytest.LogCaptureFixture):
    line = _call_line(1, "delete_job", f'{{"job_id": {_nested(1000)}}}')
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    async with http_server("streamable-http") as service, httpx2.AsyncClient(timeout=10) as http:
        with caplog.at_level("WARNING", logger="agent_jobs.server"):
            headers |= auth_headers(service)
            reply = await http.post(service.urls["streamable-http"], content=line, headers=headers)
    assert reply.status_code == 400
    assert any(r.getMessage() == "refused POST /mcp: HTTP 400" for r in caplog.records)
