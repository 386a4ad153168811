"""Input errors come back as the invalid_input envelope, create nothing;
every tool is described, its inputs too, read-only tools are annotated, and the schemas are sound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import TOOLS
from jsonschema import Draft202012Validator
from mcp import Client

from server import config
from server.app import build_server

BAD_INPUTS = [
    ("run_job", {"command": "true", "colour": "red"}, "colour"),  # unknown field
    ("run_job", {"command": 42}, "command"),  # wrong type
    ("run_job", {"command": "true", "wait_seconds": "5"}, "wait_seconds"),  # a string is not seconds
    ("run_job", {"command": "true", "wait_seconds": -1}, "wait_seconds"),  # negative seconds
    ("run_job", {"command": "true", "timeout": -0.5}, "timeout"),
    ("run_job", {"command": "true", "tags": "ci"}, "tags"),
    ("run_job", {"command": "true", "env": {"A": 1}}, "env"),
    ("run_job", {"command": ""}, "command"),
    ("run_job", {}, "command"),  # missing
    ("create_job", {"command": ["echo", "hi"], "inherit_env": "yes"}, "inherit_env"),
    ("create_job", {"command": "true", "kill_after": -3}, "kill_after"),
    ("wait", {"job_id": "../etc"}, "job_id"),
    ("wait", {"job_id": "abcd", "wait_seconds": True}, "wait_seconds"),
    ("kill", {"job_id": "abcd", "signal": "SIGSTOP"}, "signal"),
    ("snapshot", {"job_id": "abcd", "stdout_offset": -1}, "stdout_offset"),
    ("list_jobs", {"limit": "10"}, "limit"),
    ("delete_job", {}, None),  # neither job_id nor finished_older_than
    ("tag_job", {"job_id": "abcd", "tags": ["bad tag"]}, "tags"),
]


@pytest.fixture
async def client(job_root: Path):
    mcp = build_server(config.parse(["--root", str(job_root)], {}))
    async with Client(mcp, mode="legacy") as c:  # JSON-RPC framing, in memory
        yield c


@pytest.mark.parametrize(("tool", "args", "field"), BAD_INPUTS, ids=[f"{t}-{f}" for t, _, f in BAD_INPUTS])
async def test_bad_input_is_invalid_input_and_creates_nothing(client, job_root: Path, tool, args, field):
    result = await client.call_tool(tool, args)
    assert result.is_error is True
    payload = result.structured_content
    assert payload is not None
    assert payload["type"] == "error" and payload["ok"] is False
    assert payload["error"]["code"] == "invalid_input", payload
    if field:
        assert field in payload["error"]["message"]
    assert "validation error" not in result.content[0].text.lower()  # not the SDK's pydantic text
    assert json.loads(result.content[0].text) == payload
    assert not job_root.exists() or not any(job_root.iterdir())


async def test_unknown_tool_is_reported(client):
    result = await client.call_tool("no_such_tool", {})
    assert result.is_error is True


async def test_tool_listing(client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert tool.description and 2 <= tool.description.count(". ") + 1 <= 4, name
        schema = tool.input_schema
        assert schema["type"] == "object" and schema["additionalProperties"] is False, name
        for prop, sub in schema["properties"].items():
            assert sub.get("description"), f"{name}.{prop} has no description"
        Draft202012Validator.check_schema(schema)
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        Draft202012Validator.check_schema(tool.output_schema)
        assert tool.annotations is not None
        read_only = {"snapshot", "search_output", "wait", "list_jobs", "server_info"}
        assert bool(tool.annotations.read_only_hint) == (name in read_only), name
    assert tools["run_job"].input_schema["required"] == ["command"]
    assert "default 10 s, at most 55 s" in tools["run_job"].input_schema["properties"]["wait_seconds"]["description"]
    assert "default 30 s" in tools["wait"].description
    assert "default 3 s" in tools["kill"].description


def _error(code: str) -> dict[str, Any]:
    return {
        "schema_version": "0.1",
        "ok": False,
        "type": "error",
        "error": {"code": code, "message": "m", "retryable": False},
    }


async def test_output_schema_accepts_payload_and_error_and_rejects_others(client):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    for name, tool in tools.items():
        validator = Draft202012Validator(tool.output_schema)
        assert validator.is_valid(_error("job_not_found")), name
        assert not validator.is_valid({"ok": True}), name
        assert not validator.is_valid({**_error("x"), "error": None}), name  # nulls are never emitted
    created = await client.call_tool("create_job", {"command": "true"})
    assert Draft202012Validator(tools["create_job"].output_schema).is_valid(created.structured_content)
    tagged = await client.call_tool("tag_job", {"job_id": created.structured_content["job_id"], "tags": ["a.b"]})
    assert tagged.structured_content["tags"] == ["a.b"]
    assert Draft202012Validator(tools["tag_job"].output_schema).is_valid(tagged.structured_content)
    listed = await client.call_tool("list_jobs", {"all": True})
    assert Draft202012Validator(tools["list_jobs"].output_schema).is_valid(listed.structured_content)
    deleted = await client.call_tool("delete_job", {"job_id": created.structured_content["job_id"]})
    assert deleted.structured_content["deleted"] == 1
    assert Draft202012Validator(tools["delete_job"].output_schema).is_valid(deleted.structured_content)


async def test_start_and_restart(client):
    created = (await client.call_tool("create_job", {"command": "echo again"})).structured_content
    started = await client.call_tool("start_job", {"job_id": created["job_id"]})
    assert started.structured_content["state"] == "exited"
    again = await client.call_tool("start_job", {"job_id": created["job_id"]})
    assert again.is_error and again.structured_content["error"]["code"] == "invalid_state"
    restarted = await client.call_tool("restart_job", {"job_id": created["job_id"]})
    assert restarted.structured_content["type"] == "restart"
    assert restarted.structured_content["final_snapshot"]["stdout_tail"] == "again\n"


async def test_huge_wait_is_lowered_to_the_cap(job_root: Path):
    mcp = build_server(config.parse(["--root", str(job_root)], {"AGENT_JOBS_MAX_WAIT_SECONDS": "0.2"}))
    async with Client(mcp, mode="legacy") as c:
        created = (await c.call_tool("create_job", {"command": "true"})).structured_content
        waited = await c.call_tool("wait", {"job_id": created["job_id"], "wait_seconds": 10**30})
        assert waited.is_error is False
        assert waited.structured_content["timed_out"] is True
        assert waited.structured_content["state"] == "created"  # a created job is waited on, untouched
        assert 150 <= waited.structured_content["waited_ms"] < 3000


def test_wait_policy_fills_and_caps_but_leaves_bad_values_to_jobcore():
    from server.tools import TOOLS, WaitPolicy

    spec = {t.name: t for t in TOOLS}
    policy = WaitPolicy(default_s=None, cap_s=5)
    assert policy.apply(spec["wait"], {"job_id": "abcd"})["wait_seconds"] == 5  # 30 s default, capped
    assert policy.apply(spec["run_job"], {"command": "x"})["wait_seconds"] == 5
    assert policy.apply(spec["kill"], {"job_id": "abcd"})["wait_seconds"] == 3
    assert policy.apply(spec["wait"], {"job_id": "abcd", "wait_seconds": 2.5})["wait_seconds"] == 2.5
    assert policy.apply(spec["wait"], {"job_id": "abcd", "wait_seconds": 10**400})["wait_seconds"] == 5
    for bad in (None, "7", True, -1, float("inf"), float("nan"), [1]):
        args = {"job_id": "abcd", "wait_seconds": bad}
        assert policy.apply(spec["wait"], args) is args
    assert "wait_seconds" not in policy.apply(spec["snapshot"], {"job_id": "abcd"})
    assert WaitPolicy(default_s=1, cap_s=55).apply(spec["kill"], {"job_id": "abcd"})["wait_seconds"] == 1
