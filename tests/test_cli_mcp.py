"""One store, two doors: a job started with ``agent-jobs`` is seen, waited on and killed over MCP, and back."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import cli, payload_of
from mcp import Client


async def test_a_job_started_with_the_cli_is_seen_waited_on_and_killed_over_mcp(
    stdio_server, job_root: Path, server_cwd: Path
):
    job_id = cli(job_root, "run", "--tag", "cli", "sleep 60", cwd=server_cwd).stdout.strip()
    async with Client(stdio_server(), mode="legacy") as client:
        listed = (await client.call_tool("list_jobs", {})).structured_content
        assert [(j["job_id"], j["state"], j["tags"]) for j in listed["jobs"]] == [(job_id, "running", ["cli"])]
        waited = (await client.call_tool("wait", {"job_id": job_id[:8], "wait_seconds": 0.2})).structured_content
        assert waited["timed_out"] is True and waited["state"] == "running"
        killed = (await client.call_tool("kill", {"job_id": job_id})).structured_content
        assert (killed["state"], killed["end_signal"]) == ("killed", "SIGTERM")
    done = cli(job_root, "wait", job_id, "--json", cwd=server_cwd)
    assert done.returncode == 128 + 15
    assert payload_of(done, "wait")["state"] == "killed"


async def test_a_job_started_over_mcp_is_seen_waited_on_and_killed_with_the_cli(
    stdio_server, job_root: Path, server_cwd: Path
):
    async with Client(stdio_server(), mode="legacy") as client:
        result = await client.call_tool("run_job", {"command": "echo up; sleep 60", "tags": ["mcp"], "wait_seconds": 0})
        job_id = result.structured_content["job_id"]
        listed = cli(job_root, "ls", "--json", cwd=server_cwd)
        assert [(j["job_id"], j["tags"]) for j in payload_of(listed, "list")["jobs"]] == [(job_id, ["mcp"])]
        table = cli(job_root, "ls", cwd=server_cwd).stdout.splitlines()
        assert table[1].split()[:2] == [job_id[:8], "running"]
        assert cli(job_root, "wait", job_id, "--timeout", "0.2", cwd=server_cwd).returncode == 124
        killed = cli(job_root, "kill", job_id, "--json", cwd=server_cwd)
        assert killed.returncode == 0 and json.loads(killed.stdout)["state"] == "killed"
        seen = (await client.call_tool("snapshot", {"job_id": job_id})).structured_content
        assert (seen["state"], seen["signal"], seen["snapshot"]["stdout_tail"]) == ("killed", "SIGTERM", "up\n")
