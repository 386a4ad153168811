"""search_output: matching lines with context, line numbers and byte offsets, on logs of any size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from jobcore import JobError, Jobs, logsearch

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def jobs(job_root: Path) -> Jobs:
    return Jobs(job_root)


def ended_job(jobs: Jobs, command: str = "true") -> str:
    job = jobs.run(command=command, wait_seconds=30)
    assert job.state == "exited", job
    return job.job_id


def naive(raw: bytes, pattern: str, context: int) -> list[tuple[int, int, str, list[str], list[str]]]:
    """The expected matches, from the whole log split in memory: (line_number, offset, line, before, after)."""
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    shown = [line.removesuffix(b"\r").decode("utf-8", "replace") for line in lines]
    out, offset = [], 0
    for index, line in enumerate(lines):
        if pattern.encode() in line:
            out.append(
                (
                    index + 1,
                    offset,
                    shown[index],
                    shown[max(0, index - context) : index],
                    shown[index + 1 : index + 1 + context],
                )
            )
        offset += len(line) + 1
    return out


def found(payload: Any) -> list[tuple[int, int, str, list[str], list[str]]]:
    return [(m.line_number, m.offset, m.line, m.before, m.after) for m in payload.matches]


def test_matches_context_and_paging_across_chunk_edges(jobs: Jobs, monkeypatch: pytest.MonkeyPatch) -> None:
    """With chunks of 64 bytes every line, match and context crosses chunk edges; all agree with a naive split."""
    monkeypatch.setattr(logsearch, "CHUNK_BYTES", 64)
    job_id = ended_job(jobs)
    stdout = Path(jobs.snapshot(job_id=job_id).stdout_log_path)
    lines = [f"line {i} " + ("hit" if i % 7 == 3 else "x" * (i % 23)) for i in range(300)]
    raw = ("\r\n".join(lines[:150]) + "\r\n" + "\n".join(lines[150:]) + "\n\nhit without newline").encode()
    stdout.write_bytes(raw)
    expected = naive(raw, "hit", 3)
    assert len(expected) > 40

    whole = jobs.search(job_id=job_id, pattern="hit", max_matches=200)
    assert found(whole) == expected and whole.match_count == len(expected)
    assert (whole.truncated, whole.next_stdout_offset, whole.scanned_bytes) == (False, len(raw), len(raw))
    assert whole.matches[-1].line == "hit without newline" and whole.matches[-1].after == []

    paged, offset = [], 0
    while True:
        page = jobs.search(job_id=job_id, pattern="hit", stream="stdout", max_matches=4, stdout_offset=offset)
        paged += found(page)
        offset = page.next_stdout_offset
        if not page.truncated:
            break
        assert offset > page.matches[-1].offset
    # Context before a page's first match lies before its offset: only the lines and numbers are compared.
    assert [m[:3] for m in paged] == [m[:3] for m in expected]


def test_regex_ignore_case_and_both_streams(jobs: Jobs) -> None:
    job_id = ended_job(
        jobs, "printf 'ok\\nError: one\\nfine\\n'; printf 'warn\\nERROR two\\n' >&2; printf 'error: three'"
    )
    payload = jobs.search(job_id=job_id, pattern=r"^error\b", match_type="regex", ignore_case=True, context_lines=1)
    assert [(m.stream, m.line_number, m.line, m.before, m.after) for m in payload.matches] == [
        ("stdout", 2, "Error: one", ["ok"], ["fine"]),
        ("stdout", 4, "error: three", ["fine"], []),
        ("stderr", 2, "ERROR two", ["warn"], []),
    ]
    assert jobs.search(job_id=job_id, pattern="error").match_count == 1  # contains, case-sensitive
    only = jobs.search(job_id=job_id, pattern="ERROR", stream="stderr")
    assert [m.stream for m in only.matches] == ["stderr"] and only.next_stdout_offset is None


def test_a_pattern_matching_empty_text_finds_only_real_lines(jobs: Jobs) -> None:
    job_id = ended_job(jobs, "printf 'a\\n\\nb\\n'")
    payload = jobs.search(job_id=job_id, pattern="^", match_type="regex", context_lines=0)
    assert [(m.line_number, m.offset, m.line) for m in payload.matches] == [(1, 0, "a"), (2, 2, ""), (3, 3, "b")]


def test_stdout_full_leaves_stderr_for_the_next_call(jobs: Jobs) -> None:
    job_id = ended_job(jobs, "echo a1; echo a2; echo a3 >&2")
    first = jobs.search(job_id=job_id, pattern="a", max_matches=1, context_lines=0)
    assert [m.line for m in first.matches] == ["a1"] and first.truncated
    assert (first.next_stdout_offset, first.next_stderr_offset) == (3, 0)
    second = jobs.search(
        job_id=job_id, pattern="a", max_matches=2, stdout_offset=first.next_stdout_offset, stderr_offset=0
    )
    assert [(m.stream, m.line_number) for m in second.matches] == [("stdout", 2), ("stderr", 1)]
    assert not second.truncated


def test_bad_inputs_are_refused_naming_the_field(jobs: Jobs) -> None:
    job_id = ended_job(jobs)
    for args, field in (
        ({"pattern": "("}, "pattern"),
        ({"pattern": ""}, "pattern"),
        ({"pattern": "a", "context_lines": 51}, "context_lines"),
        ({"pattern": "a", "max_matches": 201}, "max_matches"),
        ({"pattern": "a", "stream": "both"}, "stream"),
        ({"pattern": "a", "stdout_offset": -1}, "stdout_offset"),
    ):
        if field == "pattern" and args["pattern"] == "(":
            args = {**args, "match_type": "regex"}
        with pytest.raises(JobError) as refused:
            jobs.search(job_id=job_id, **args)
        assert refused.value.code == "invalid_input" and refused.value.details["field"] == field, args


_SEARCH_IN_CHILD = """
import json, sys
from jobcore import Jobs

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

jobs = Jobs(sys.argv[1])
jobs.search(job_id=sys.argv[2], pattern="warm up", stdout_offset=1 << 40)  # imports and first-call costs
before = status("VmRSS:")
first = jobs.search(job_id=sys.argv[2], pattern="NEEDLE", context_lines=2, max_matches=1)
rest = jobs.search(job_id=sys.argv[2], pattern="NEEDLE", context_lines=2, stdout_offset=first.next_stdout_offset)
print(json.dumps({"grew": status("VmHWM:") - before, "first": first.to_dict(), "rest": rest.to_dict()}))
"""


def test_a_1gb_log_in_bounded_memory(jobs: Jobs, job_root: Path) -> None:
    """1 GiB of 10-byte lines: a CRLF match across the first chunk's edge, a last line without newline."""
    job_id = ended_job(jobs)
    stdout = jobs.snapshot(job_id=job_id).stdout_log_path
    head, tail = 1048570, 1073740000  # whole 10-byte lines; the first NEEDLE line spans byte 1 MiB
    subprocess.run(
        f"{{ yes xxxxxxxxx | head -c {head}; printf 'NEEDLE one\\r\\n'; yes xxxxxxxxx | head -c {tail}; "
        f"printf 'NEEDLE two'; }} > '{stdout}'",
        shell=True,
        check=True,
    )
    size = os.path.getsize(stdout)
    try:
        child = subprocess.run(
            [sys.executable, "-c", _SEARCH_IN_CHILD, str(job_root), job_id],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    finally:
        os.truncate(stdout, 0)  # 1 GiB less on the disk at once
    out = json.loads(child.stdout)
    assert out["grew"] < 50 * 1024 * 1024, out["grew"]
    first, rest = out["first"], out["rest"]
    assert first["matches"] == [
        {
            "stream": "stdout",
            "line_number": head // 10 + 1,
            "offset": head,
            "line": "NEEDLE one",
            "before": ["xxxxxxxxx"] * 2,
            "after": ["xxxxxxxxx"] * 2,
        }
    ]
    last = head + 12 + tail
    assert (first["truncated"], first["next_stdout_offset"]) == (True, last)
    assert rest["matches"] == [
        {
            "stream": "stdout",
            "line_number": head // 10 + 1 + tail // 10 + 1,
            "offset": last,
            "line": "NEEDLE two",
            "before": [],  # a call starting at an offset has no context before it
            "after": [],
        }
    ]
    assert (rest["truncated"], rest["next_stdout_offset"], rest["scanned_bytes"]) == (False, size, size - last)


async def test_a_catastrophic_regex_ends_with_an_error_and_blocks_nothing(stdio_server, job_root: Path) -> None:
    jobs = Jobs(job_root)
    job_id = ended_job(jobs, "head -c 20000 /dev/zero | tr '\\0' x; echo")
    stdout = Path(jobs.snapshot(job_id=job_id).stdout_log_path)
    before = (stdout.read_bytes(), jobs.snapshot(job_id=job_id).state)
    answered: list[str] = []

    async with Client(stdio_server(), mode="legacy") as client:

        async def search() -> None:
            result = await client.call_tool(
                "search_output", {"job_id": job_id, "pattern": "(x+x+)+y", "match_type": "regex"}
            )
            answered.append("search")
            payload = result.structured_content
            assert result.is_error and payload["error"]["code"] == "pattern_timeout", payload
            assert "(x+x+)+y" in payload["error"]["message"]
            assert payload["error"]["details"]["pattern"] == "(x+x+)+y"

        async def others() -> None:
            for _ in range(3):
                result = await client.call_tool("snapshot", {"job_id": job_id, "tail_lines": 1})
                assert not result.is_error
                listed = await client.call_tool("list_jobs", {"all": True})
                assert not listed.is_error
            answered.append("others")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(search)
                await anyio.sleep(0)  # the search is sent first
                tg.start_soon(others)
    assert answered == ["others", "search"]  # the other calls were answered while the regex ran
    assert (stdout.read_bytes(), jobs.snapshot(job_id=job_id).state) == before


async def test_a_test_run_failures_in_two_calls_and_4kb(stdio_server, server_cwd: Path) -> None:
    """20,000 lines of a test run with 3 failures: their names and tracebacks in run_job + search_output."""
    script = server_cwd / "suite.py"
    script.write_text(
        "for i in range(20000):\n"
        "    if i in (4321, 9876, 15000):\n"
        "        print(f'tests/test_mod.py::test_case_{i} FAILED')\n"
        "        print('Traceback (most recent call last):')\n"
        "        print(f'  File \"tests/test_mod.py\", line {i}, in test_case_{i}')\n"
        "        print(f'AssertionError: expected {i} got {i + 1}')\n"
        "    else:\n"
        "        print(f'tests/test_mod.py::test_case_{i} PASSED')\n"
    )
    async with Client(stdio_server(), mode="legacy") as client:
        run = await client.call_tool(
            "run_job", {"command": [sys.executable, str(script)], "wait_seconds": 30, "tail_lines": 1}
        )
        assert run.structured_content["state"] == "exited", run.structured_content
        hits = await client.call_tool(
            "search_output",
            {"job_id": run.structured_content["job_id"], "pattern": "FAILED", "stream": "stdout", "context_lines": 3},
        )
    payload = hits.structured_content
    assert [m["line"] for m in payload["matches"]] == [
        f"tests/test_mod.py::test_case_{i} FAILED" for i in (4321, 9876, 15000)
    ]
    assert all(m["after"][-1].startswith("AssertionError: expected") for m in payload["matches"])
    assert [m["line_number"] for m in payload["matches"]] == [4322, 9877 + 3, 15001 + 6]
    returned = len(run.content[0].text.encode()) + len(hits.content[0].text.encode())
    assert returned <= 4096, returned


async def test_50mb_of_output_last_lines_and_size_in_one_call(stdio_server) -> None:
    command = "yes 'a line of output, one of very many' | head -c 52428800; echo; echo the end"
    async with Client(stdio_server(), mode="legacy") as client:
        run = await client.call_tool("run_job", {"command": command, "wait_seconds": 50, "tail_lines": 20})
    payload = run.structured_content
    assert payload["state"] == "exited", payload
    snap = payload["final_snapshot"]
    assert snap["stdout_observed_bytes"] == 52428800 + len("\nthe end\n")
    lines = snap["stdout_tail"].splitlines()
    assert len(lines) == 20 and lines[-1] == "the end"
    assert len(run.content[0].text.encode()) <= 64 * 1024
