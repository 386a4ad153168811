"""The official SDK client against the server over stdio, SSE and streamable HTTP: jobs, waits, progress, cancels."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from helpers import Fifo, auth_headers, wait_exit
from jsonschema import Draft202012Validator
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

TRANSPORTS = ["stdio", "sse", "streamable-http"]


class Session:
    """A connected client plus each tool's outputSchema, checking every result against it."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.validators: dict[str, Draft202012Validator] = {}

    async def load_schemas(self) -> None:
        for tool in (await self.client.list_tools()).tools:
            assert tool.output_schema is not None, tool.name
            Draft202012Validator.check_schema(tool.output_schema)
            self.validators[tool.name] = Draft202012Validator(tool.output_schema)

    async def call(self, name: str, args: dict[str, Any], **kw: Any) -> tuple[dict[str, Any], bool]:
        result = await self.client.call_tool(name, args, **kw)
        payload = result.structured_content
        assert isinstance(payload, dict)
        errors = [e.message for e in self.validators[name].iter_errors(payload)]
        assert not errors, f"{name} result does not match its outputSchema: {errors[:3]}"
        assert json.loads(result.content[0].text) == payload  # the same JSON as text
        assert bool(result.is_error) == (payload["ok"] is False)
        return payload, bool(result.is_error)

    async def ok(self, name: str, args: dict[str, Any], **kw: Any) -> dict[str, Any]:
        payload, is_error = await self.call(name, args, **kw)
        assert not is_error, payload
        return payload


@pytest.fixture
def connect(stdio_server, http_server):
    """``async with connect(transport, *flags, env=..., mode=...) as session``: a fresh server and client."""

    @asynccontextmanager
    async def open_session(
        transport: str, *flags: str, env: dict[str, str] | None = None, mode: str = "legacy"
    ) -> AsyncIterator[Session]:
        if transport == "stdio":
            async with Client(stdio_server(*flags, env=env), mode=mode) as client:
                session = Session(client)
                await session.load_schemas()
                yield session
            return
        async with http_server(transport, *flags, env=env) as service:
            url, headers = service.urls[transport], auth_headers(service)
            http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
            if transport == "sse":
                target = sse_client(url, headers=headers)
            else:
                target = streamable_http_client(url, http_client=http)
            async with http, Client(target, mode=mode) as client:
                session = Session(client)
                await session.load_schemas()
                yield session

    return open_session


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_run_short_command_returns_output_and_exit_code_in_one_call(connect, transport):
    async with connect(transport) as s:
        run = await s.ok("run_job", {"command": "printf 'hello\\n'; printf 'oops\\n' >&2; exit 3"})
        assert run["type"] == "run"
        assert run["state"] == "exited"
        assert run["exit_code"] == 3
        assert run["final_snapshot"]["stdout_tail"] == "hello\n"
        assert run["final_snapshot"]["stderr_tail"] == "oops\n"
        assert "snapshot" not in run  # optional fields are left out, never null


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_long_job_run_wait_snapshot_kill(connect, transport):
    async with connect(transport) as s:
        run = await s.ok("run_job", {"command": "echo started; exec sleep 60", "wait_seconds": 0})
        assert run["state"] == "running"
        assert "exit_code" not in run
        job_id = run["job_id"]

        waited = await s.ok("wait", {"job_id": job_id, "wait_seconds": 0.2})
        assert waited["timed_out"] is True
        assert waited["state"] == "running"

        snap = await s.ok("snapshot", {"job_id": job_id[:8]})
        assert snap["state"] == "running"
        assert snap["job_id"] == job_id

        killed = await s.ok("kill", {"job_id": job_id})
        assert killed["signal"] == "SIGTERM"
        assert killed["state"] == "killed"

        final = await s.ok("wait", {"job_id": job_id})
        assert final["state"] == "killed"
        assert final["timed_out"] is False
        assert final["final_snapshot"]["stdout_tail"] == "started\n"


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
async def test_modern_protocol_era(connect, transport):
    """The 2026-07-28 era (server/discover, no handshake) serves the same tools and payloads."""
    async with connect(transport, mode="auto") as s:
        run = await s.ok("run_job", {"command": ["echo", "modern"]})
        assert run["final_snapshot"]["stdout_tail"] == "modern\n"
        payload, is_error = await s.call("snapshot", {"job_id": "ffff0000"})
        assert is_error and payload["error"]["code"] == "job_not_found"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_errors_are_envelopes_that_match_the_output_schema(connect, transport):
    async with connect(transport) as s:
        payload, is_error = await s.call("wait", {"job_id": "0123456789abcdef"})
        assert is_error
        assert payload == {
            "schema_version": "0.1",
            "ok": False,
            "type": "error",
            "error": payload["error"],
        }
        assert payload["error"]["code"] == "job_not_found"
        assert "0123456789abcdef" in payload["error"]["message"]


async def test_two_waits_and_a_snapshot_on_one_connection(connect, tmp_path: Path):
    """While two waits are in flight on the connection, a snapshot is answered."""
    fifo = Fifo(tmp_path / "release")
    async with connect("stdio") as s:
        run = await s.ok("run_job", {"command": f"echo up; read x < {fifo}; echo got $x", "wait_seconds": 0})
        job_id = run["job_id"]
        in_flight = [anyio.Event(), anyio.Event()]
        results: list[dict[str, Any]] = []

        async def wait_call(i: int) -> None:
            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                in_flight[i].set()

            results.append(await s.ok("wait", {"job_id": job_id, "wait_seconds": 30}, progress_callback=on_progress))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_call, 0)
                tg.start_soon(wait_call, 1)
                for event in in_flight:  # each wait has reported progress: the server is serving it
                    await event.wait()
                snap = await s.ok("snapshot", {"job_id": job_id})
                assert snap["state"] == "running"
                assert results == []  # both waits still pending while the snapshot was answered
                await anyio.to_thread.run_sync(fifo.write, "go")
        assert [r["state"] for r in results] == ["exited", "exited"]
        assert all(r["final_snapshot"]["stdout_tail"] == "up\ngot go\n" for r in results)


async def test_wait_sends_progress_notifications(connect):
    """A wait with a progress token gets notifications about once a second."""
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connect("stdio") as s:
        run = await s.ok("run_job", {"command": "exec sleep 60", "wait_seconds": 0})
        waited = await s.ok("wait", {"job_id": run["job_id"], "wait_seconds": 2.5}, progress_callback=on_progress)
        assert waited["timed_out"] is True
        await s.ok("kill", {"job_id": run["job_id"], "signal": "KILL"})
    assert len(seen) >= 2, seen
    progresses = [p for p, _, _ in seen]
    assert progresses == sorted(progresses) and len(set(progresses)) == len(progresses)
    assert all(total == 2.5 for _, total, _ in seen)
    assert all(message and "waiting" in message for _, _, message in seen)


async def test_wait_above_the_cap_returns_at_the_cap(connect):
    """wait_seconds 999 is lowered to the cap, not refused; the job keeps running."""
    async with connect("stdio", env={"AGENT_JOBS_MAX_WAIT_SECONDS": "1.5"}) as s:
        run = await s.ok("run_job", {"command": "exec sleep 60", "wait_seconds": 0})
        with anyio.fail_after(10):
            waited = await s.ok("wait", {"job_id": run["job_id"], "wait_seconds": 999})
        assert waited["timed_out"] is True
        assert waited["state"] == "running"
        assert 1400 <= waited["waited_ms"] < 5000
        snap = await s.ok("snapshot", {"job_id": run["job_id"]})
        assert snap["state"] == "running"
        await s.ok("kill", {"job_id": run["job_id"], "signal": "SIGKILL"})


async def test_default_wait_from_the_environment(connect):
    """AGENT_JOBS_DEFAULT_WAIT_SECONDS replaces every waiting tool's default."""
    async with connect("stdio", env={"AGENT_JOBS_DEFAULT_WAIT_SECONDS": "0.3"}) as s:
        run = await s.ok("run_job", {"command": "exec sleep 60"})
        assert run["state"] == "running"
        assert run["waited_ms"] < 3000
        waited = await s.ok("wait", {"job_id": run["job_id"]})
        assert waited["timed_out"] is True and 250 <= waited["waited_ms"] < 3000
        await s.ok("kill", {"job_id": run["job_id"], "signal": "SIGKILL"})


async def _cancel_a_wait_in_flight(s: Session, job_id: str) -> None:
    """Start a ``wait``, and once its first progress notification shows it waiting, cancel it
    (the client sends notifications/cancelled)."""
    in_flight = anyio.Event()

    async def on_progress(*_: Any) -> None:
        in_flight.set()

    async def waiter() -> None:
        await s.client.call_tool("wait", {"job_id": job_id}, progress_callback=on_progress)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await in_flight.wait()
        tg.cancel_scope.cancel()


async def test_cancelling_a_wait_leaves_the_job_running(connect):
    async with connect("stdio") as s:
        run = await s.ok("run_job", {"command": "exec sleep 60", "wait_seconds": 0})
        await _cancel_a_wait_in_flight(s, run["job_id"])
        snap = await s.ok("snapshot", {"job_id": run["job_id"]})
        assert snap["state"] == "running"
        await s.ok("kill", {"job_id": run["job_id"], "signal": "SIGKILL"})


@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_closing_the_connection_during_a_wait_leaves_the_job_running(connect, transport, job_root: Path):
    from jobcore import Jobs

    async with connect(transport) as s:
        run = await s.ok("run_job", {"command": "exec sleep 60", "wait_seconds": 0})
        await _cancel_a_wait_in_flight(s, run["job_id"])
    # client and server are both gone now
    assert Jobs(job_root).snapshot(job_id=run["job_id"]).state == "running"
    Jobs(job_root).kill(job_id=run["job_id"], signal="SIGKILL")


async def test_tags_events_and_retention_tools_over_stdio(connect, tmp_path: Path):
    """Through the server: tags, tag_job, an output trigger, a completion sink, delete_job."""
    sink = tmp_path / "finished.ndjson"
    async with connect("stdio") as s:
        ran = await s.ok(
            "run_job",
            {
                "command": "echo 'ERROR one'; echo fine; echo 'ERROR two'",
                "tags": ["ci", "project.build"],
                "notify_file": str(sink),
                "on_output_match": {"pattern": "^ERROR", "match_type": "regex"},
            },
        )
        assert (ran["state"], ran["tags"]) == ("exited", ["ci", "project.build"])
        other = await s.ok("create_job", {"command": "true", "tags": ["project"]})
        listed = await s.ok("list_jobs", {"all": True, "tags": ["project.*", "ci"]})
        assert [j["job_id"] for j in listed["jobs"]] == [ran["job_id"]]
        tagged = await s.ok("tag_job", {"job_id": other["job_id"], "tags": ["ci", "project.x"]})
        assert (tagged["type"], tagged["tags"]) == ("tag", ["ci", "project.x"])
        listed = await s.ok("list_jobs", {"all": True, "tags": ["project.*", "ci"]})
        assert [j["job_id"] for j in listed["jobs"]] == [other["job_id"], ran["job_id"]]

        bad, is_error = await s.call(
            "run_job", {"command": "true", "on_output_match": {"pattern": "(", "match_type": "regex"}}
        )
        assert is_error and bad["error"]["code"] == "invalid_input"

        supervisor = json.loads((Path(ran["stdout_log_path"]).parent / "state.json").read_text())["supervisor_pid"]
        wait_exit(supervisor)  # every delivery done
        events = (await s.ok("snapshot", {"job_id": ran["job_id"]}))["events"]
        assert events == {"matched": 2, "last_line": "ERROR two", "line_number": 3, "offset": 15}
        (finished,) = [json.loads(line) for line in sink.read_text().splitlines()]
        assert (finished["event_type"], finished["job_id"], finished["exit_code"]) == ("job.finished", ran["job_id"], 0)

        dry = await s.ok("delete_job", {"job_id": ran["job_id"], "dry_run": True})
        assert (dry["deleted"], dry["jobs"][0]["action"]) == (0, "would_delete")
        gone = await s.ok("delete_job", {"job_id": ran["job_id"]})
        assert gone["deleted"] == 1
        missing, is_error = await s.call("snapshot", {"job_id": ran["job_id"]})
        assert is_error and missing["error"]["code"] == "job_not_found"
