"""The budget per call: every payload that carries output is at most 64 KiB of JSON text as sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from jobcore import Jobs
from server import config
from server.app import build_server

BUDGET = 64 * 1024
#: tools/list is read into the model's context on every session: input schemas and descriptions.
TOOLS_LIST_BUDGET = 14 * 1024


def sent(result: Any) -> int:
    """The largest of what the server sends for a result: its text, and its structured content escaped."""
    text = result.content[0].text
    assert json.loads(text) == result.structured_content
    return max(len(text.encode()), len(json.dumps(result.structured_content)))


def windows(payload: dict[str, Any]) -> dict[str, Any]:
    return payload.get("snapshot") or payload.get("final_snapshot")


async def test_worst_outputs_stay_within_the_budget(stdio_server, job_root: Path) -> None:
    """Random bytes (each becomes an escaped U+FFFD) and a progress bar without newlines, on both streams."""
    commands = {
        "random": "head -c 400000 /dev/urandom; head -c 400000 /dev/urandom >&2",
        "progress": "for i in $(seq 1 3000); do printf '\\r[%-20s] %d%%' '####' $i; done; "
        "for i in $(seq 1 3000); do printf '\\r[%-20s] %d%%' '####' $i >&2; done",
    }
    async with Client(stdio_server(), mode="legacy") as client:
        for name, command in commands.items():
            run = await client.call_tool("run_job", {"command": command, "wait_seconds": 30, "tail_lines": 0})
            payload = run.structured_content
            assert payload["state"] == "exited", payload
            job_id = payload["job_id"]
            calls = {
                "run_job": run,
                "snapshot": await client.call_tool("snapshot", {"job_id": job_id, "tail_lines": 0}),
                "snapshot head": await client.call_tool(
                    "snapshot", {"job_id": job_id, "tail_lines": 0, "head_lines": 100, "max_bytes": 1 << 20}
                ),
                "snapshot offsets": await client.call_tool(
                    "snapshot", {"job_id": job_id, "stdout_offset": 0, "stderr_offset": 0, "max_bytes": 1 << 20}
                ),
                "wait": await client.call_tool("wait", {"job_id": job_id, "tail_lines": 0}),
            }
            for call, result in calls.items():
                assert not result.is_error, (name, call, result.structured_content)
                assert sent(result) <= BUDGET, (name, call, sent(result))
                snap = windows(result.structured_content)
                assert snap["cut_to_fit"] is True and snap["truncated"] is True, (name, call)

    # The windows still say exactly which bytes they hold: paging on from each range's end reads on.
    jobs = Jobs(job_root)
    raw = Path(jobs.snapshot(job_id=job_id).stdout_log_path).read_bytes()
    offset, pages = 0, []
    while offset < len(raw):
        snap = jobs.snapshot(job_id=job_id, stdout_offset=offset, stderr_offset=0, max_bytes=1 << 20).snapshot
        begin, end = snap.stdout_range
        assert begin == offset and end > begin
        assert snap.stdout_tail == raw[begin:end].decode("utf-8", "replace")
        pages.append(raw[begin:end])
        offset = end
    assert b"".join(pages) == raw


def test_a_small_output_is_not_cut(job_root: Path) -> None:
    jobs = Jobs(job_root)
    run = jobs.run(command="echo hello; echo oops >&2", wait_seconds=30)
    assert run.final_snapshot.cut_to_fit is None and "cut_to_fit" not in run.to_dict()["final_snapshot"]
    snap = jobs.snapshot(job_id=run.job_id, head_lines=1).snapshot
    assert (snap.stdout_head, snap.stderr_head, snap.stdout_tail) == ("hello\n", "oops\n", "hello\n")


def test_head_lines_gives_the_first_lines(job_root: Path) -> None:
    jobs = Jobs(job_root)
    run = jobs.run(command="seq 1 100000", wait_seconds=30)
    snap = jobs.snapshot(job_id=run.job_id, head_lines=3, tail_lines=2).snapshot
    assert (snap.stdout_head, snap.stdout_tail, snap.stderr_head) == ("1\n2\n3\n", "99999\n100000\n", "")
    short = jobs.snapshot(job_id=run.job_id, head_lines=3, max_bytes=3).snapshot
    assert short.stdout_head == "1\n2"  # within max_bytes like the tail
    assert "stdout_head" not in jobs.snapshot(job_id=run.job_id).to_dict()["snapshot"]


def test_search_output_returns_fewer_matches_to_fit(job_root: Path) -> None:
    """200 matches with 50 lines of context each, of long invalid-UTF-8 lines: cut, with where to go on."""
    jobs = Jobs(job_root)
    job_id = jobs.run(command="true", wait_seconds=30).job_id
    stdout = Path(jobs.snapshot(job_id=job_id).stdout_log_path)
    stdout.write_bytes(b"".join(b"hit " + b"\xff" * 2000 + b"\n" for _ in range(400)))
    payload = jobs.search(job_id=job_id, pattern="hit", context_lines=50, max_matches=200)
    assert len(json.dumps(payload.to_dict())) <= BUDGET
    assert 0 < payload.match_count < 200 and payload.truncated
    assert payload.next_stdout_offset == payload.match_count * 2005  # the first match left out
    assert payload.matches[0].line == "hit " + "\ufffd" * 996  # each line cut to 1000 characters
    unbounded = Jobs(job_root, budget_bytes=None).search(job_id=job_id, pattern="hit", max_matches=200)
    assert unbounded.match_count == 200 and len(unbounded.matches[0].after) == 3


@pytest.mark.anyio
async def test_tools_list_stays_small(job_root: Path) -> None:
    mcp = build_server(config.parse(["--root", str(job_root)], {}))
    async with Client(mcp, mode="legacy") as client:
        tools = (await client.list_tools()).tools
    size = sum(len(json.dumps(t.input_schema, separators=(",", ":"))) + len(t.description or "") for t in tools)
    assert size <= TOOLS_LIST_BUDGET, size
