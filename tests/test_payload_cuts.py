"""Payloads say what happened: log pages keep whole characters, a kill of an ended job says so,
a lowered wait is reported, and list_jobs pages with a cursor. Real jobs, through ``jobcore.Jobs``
and, for what the server adds, through the SDK client."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from jobcore import JobError, Jobs
from server import config
from server.app import build_server

TEXT = "café, naïve: 😀 ok\nfin ü\n"


@pytest.fixture
def jobs(job_root: Path) -> Jobs:
    return Jobs(job_root)


def write_bytes(jobs: Jobs, data: bytes) -> str:
    """A job that writes ``data`` to stdout and ends, ended when this returns."""
    script = f"import sys; sys.stdout.buffer.write({data!r})"
    done = jobs.run(command=[sys.executable, "-c", script], wait_seconds=30)
    assert done.state == "exited", done
    return done.job_id


def pages(jobs: Jobs, job_id: str, max_bytes: int) -> list[tuple[str, tuple[int, int]]]:
    """Every stdout page from offset 0, each read from the end of the one before."""
    out: list[tuple[str, tuple[int, int]]] = []
    offset = 0
    while True:
        window = jobs.snapshot(job_id=job_id, stdout_offset=offset, max_bytes=max_bytes).snapshot
        out.append((window.stdout_tail, window.stdout_range))
        if not window.truncated:
            return out
        assert window.stdout_range[1] > offset, f"no progress at {offset} with max_bytes {max_bytes}"
        offset = window.stdout_range[1]


@pytest.mark.parametrize("max_bytes", [1, 2, 3, 5, 7])
def test_pages_end_on_characters_and_rejoin_to_the_exact_text(jobs: Jobs, max_bytes: int) -> None:
    job_id = write_bytes(jobs, TEXT.encode())
    got = pages(jobs, job_id, max_bytes)
    assert "".join(text for text, _ in got) == TEXT
    assert all("\ufffd" not in text for text, _ in got)
    assert got[-1][1][1] == len(TEXT.encode())


def test_a_window_smaller_than_a_character_returns_that_whole_character(jobs: Jobs) -> None:
    job_id = write_bytes(jobs, "😀😀".encode())
    first = jobs.snapshot(job_id=job_id, stdout_offset=0, max_bytes=1).snapshot
    assert (first.stdout_tail, first.stdout_range, first.truncated) == ("😀", (0, 4), True)
    assert [text for text, _ in pages(jobs, job_id, 1)] == ["😀", "😀"]


def test_invalid_bytes_stay_replaced_and_pages_move_on(jobs: Jobs) -> None:
    data = b"a\xffb\xe2\x82\xacc\xe2\x82"  # a stray byte, a euro sign, and a character cut by the end
    job_id = write_bytes(jobs, data)
    for max_bytes in (1, 2, 4):
        assert "".join(text for text, _ in pages(jobs, job_id, max_bytes)) == data.decode("utf-8", "replace")


def test_a_tail_does_not_begin_inside_a_character(jobs: Jobs) -> None:
    job_id = write_bytes(jobs, "😀x".encode())
    for max_bytes in (2, 3, 4):
        tail = jobs.snapshot(job_id=job_id, max_bytes=max_bytes).snapshot
        assert (tail.stdout_tail, tail.stdout_range, tail.truncated) == ("x", (4, 5), True)
    whole = jobs.snapshot(job_id=job_id, max_bytes=5).snapshot
    assert (whole.stdout_tail, whole.stdout_range, whole.truncated) == ("😀x", (0, 5), False)


def test_kill_of_an_exited_job_says_it_had_already_ended(jobs: Jobs) -> None:
    done = jobs.run(command="exit 3", wait_seconds=30)
    assert done.state == "exited"
    killed = jobs.kill(job_id=done.job_id).to_dict()
    assert killed["already_ended"] is True
    assert (killed["state"], killed["exit_code"], killed["finished_at"]) == ("exited", 3, done.finished_at)
    assert "signal" not in killed and "end_signal" not in killed and "reason" not in killed


def test_kill_of_a_killed_job_says_how_it_ended(jobs: Jobs) -> None:
    running = jobs.run(command="sleep 60", wait_seconds=0)
    first = jobs.kill(job_id=running.job_id, wait_seconds=30).to_dict()
    assert first["state"] == "killed" and first["signal"] == "SIGTERM"
    assert "already_ended" not in first
    again = jobs.kill(job_id=running.job_id).to_dict()
    assert again["already_ended"] is True
    assert "signal" not in again  # nothing was alive to signal
    assert (again["end_signal"], again["reason"], again["finished_at"]) == ("SIGTERM", "killed", first["finished_at"])


@pytest.fixture
async def capped(job_root: Path):
    """A server whose waits are capped at 2 s, through the SDK client in memory."""
    mcp = build_server(config.parse(["--root", str(job_root)], {"AGENT_JOBS_MAX_WAIT_SECONDS": "2"}))
    async with Client(mcp, mode="legacy") as client:
        yield client


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert result.is_error is False, result.structured_content
    assert result.structured_content is not None
    return result.structured_content


async def test_a_wait_lowered_to_the_cap_is_in_every_waiting_payload(capped: Client) -> None:
    ran = await call(capped, "run_job", {"command": "true", "wait_seconds": 999})
    assert ran["state"] == "exited" and ran["lowered_to"] == {"wait_seconds": 2}
    job_id = ran["job_id"]
    waited = await call(capped, "wait", {"job_id": job_id, "wait_seconds": 10**30})
    assert waited["lowered_to"] == {"wait_seconds": 2}
    killed = await call(capped, "kill", {"job_id": job_id, "wait_seconds": 60})
    assert killed["lowered_to"] == {"wait_seconds": 2}
    restarted = await call(capped, "restart_job", {"job_id": job_id, "wait_seconds": 3})
    assert restarted["lowered_to"] == {"wait_seconds": 2}
    created = await call(capped, "create_job", {"command": "true"})
    started = await call(capped, "start_job", {"job_id": created["job_id"], "wait_seconds": 2.5})
    assert started["lowered_to"] == {"wait_seconds": 2}


async def test_a_lowered_wait_is_reported_beside_a_lowered_max_bytes(capped: Client) -> None:
    ran = await call(capped, "run_job", {"command": "true", "wait_seconds": 999, "max_bytes": 1 << 30})
    assert ran["lowered_to"] == {"max_bytes": 1 << 20, "wait_seconds": 2}


async def test_a_wait_within_the_cap_reports_nothing_lowered(capped: Client) -> None:
    ran = await call(capped, "run_job", {"command": "true", "wait_seconds": 2})
    assert "lowered_to" not in ran
    assert "lowered_to" not in await call(capped, "wait", {"job_id": ran["job_id"]})
    assert "lowered_to" not in await call(capped, "kill", {"job_id": ran["job_id"]})


def listed(jobs: Jobs, **args: Any) -> tuple[list[str], str | None]:
    page = jobs.list(all=True, **args)
    assert page.truncated == (page.next_cursor is not None)
    return [entry.job_id for entry in page.jobs], page.next_cursor


def test_list_pages_with_a_cursor_skip_and_repeat_nothing(jobs: Jobs) -> None:
    first = [jobs.create(command="true").job_id for _ in range(5)]
    newest_first = first[::-1]
    page, cursor = listed(jobs, limit=2)
    assert page == newest_first[:2] and cursor is not None
    seen = list(page)
    while cursor is not None:
        jobs.create(command="true")  # a newer job between two calls shifts nothing
        page, cursor = listed(jobs, limit=2, cursor=cursor)
        seen += page
    assert seen == newest_first


def test_list_without_limit_or_past_the_end_has_no_cursor(jobs: Jobs) -> None:
    ids = [jobs.create(command="true").job_id for _ in range(2)]
    assert listed(jobs, limit=0) == (ids[::-1], None)
    assert listed(jobs, limit=2) == (ids[::-1], None)
    _, cursor = listed(jobs, limit=1)
    assert listed(jobs, limit=1, cursor=cursor) == ([ids[0]], None)


@pytest.mark.parametrize("bad", ["", "nope!", "bnVsbA", "WzEsMiwzXQ", "WyJhIiwxXQ"])
def test_a_bad_cursor_is_invalid_input(jobs: Jobs, bad: str) -> None:
    jobs.create(command="true")
    with pytest.raises(JobError) as refused:
        jobs.list(all=True, cursor=bad)
    assert refused.value.code == "invalid_input"
    assert refused.value.details == {"field": "cursor"}
    assert refused.value.message.startswith("cursor: not a cursor from list_jobs")


async def test_list_jobs_pages_through_the_server(capped: Client) -> None:
    ids = [(await call(capped, "create_job", {"command": "true"}))["job_id"] for _ in range(3)]
    first = await call(capped, "list_jobs", {"all": True, "limit": 2})
    assert first["truncated"] is True
    rest = await call(capped, "list_jobs", {"all": True, "limit": 2, "cursor": first["next_cursor"]})
    assert "next_cursor" not in rest and rest["truncated"] is False
    assert [j["job_id"] for j in first["jobs"] + rest["jobs"]] == ids[::-1]
    bad = await capped.call_tool("list_jobs", {"cursor": "nope!"})
    assert bad.is_error is True and bad.structured_content["error"]["code"] == "invalid_input"
    assert "cursor" in bad.structured_content["error"]["message"]
