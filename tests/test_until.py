"""wait until a line matches, wait for any or all of many jobs, kill many: the agent's short loops."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from mcp import Client

from jobcore import JobError, Jobs
from tests.helpers import Fifo


@pytest.fixture
def jobs(job_root: Path) -> Jobs:
    return Jobs(job_root)


def _served(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.structured_content
    return result.structured_content


async def test_a_dev_server_known_listening_then_killed_in_3_calls(stdio_server, tmp_path: Path) -> None:
    ready = Fifo(tmp_path / "ready")
    command = f"echo booting; read x < {ready}; echo 'Listening on :8080'; echo more; exec sleep 60"
    async with Client(stdio_server(), mode="legacy") as client:
        launched = _served(await client.call_tool("run_job", {"command": command, "wait_seconds": 0}))
        job_id = launched["job_id"]
        written: list[float] = []

        async def say_ready() -> None:
            await anyio.to_thread.run_sync(ready.write)
            written.append(time.monotonic())

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(say_ready)
                waited = _served(
                    await client.call_tool(
                        "wait", {"job_id": job_id, "until": {"pattern": "Listening on"}, "wait_seconds": 20}
                    )
                )
        answered = time.monotonic()
        assert waited["matched"] == {
            "stream": "stdout",
            "line": "Listening on :8080",
            "line_number": 2,
            "offset": len("booting\n"),
        }
        assert (waited["state"], waited["timed_out"]) == ("running", False)
        assert answered - written[0] < 1.0
        killed = _served(await client.call_tool("kill", {"job_id": job_id}))
        assert killed["state"] == "killed"


async def test_six_jobs_first_failure_known_then_the_rest_killed(stdio_server, tmp_path: Path) -> None:
    gates = [Fifo(tmp_path / f"gate{i}") for i in range(6)]
    async with Client(stdio_server(), mode="legacy") as client:
        ids = []
        for i, gate in enumerate(gates):
            command = f"read x < {gate}; exit {3 if i == 2 else 0}"
            launched = await client.call_tool("run_job", {"command": command, "wait_seconds": 0, "tags": ["batch"]})
            ids.append(_served(launched)["job_id"])
        written: list[float] = []

        async def fail_one() -> None:
            await anyio.to_thread.run_sync(gates[2].write)
            written.append(time.monotonic())

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(fail_one)
                waited = _served(await client.call_tool("wait", {"tags": ["batch"], "wait_seconds": 20}))
        assert time.monotonic() - written[0] < 1.0
        assert waited["ended"] == [ids[2]]
        assert waited["timed_out"] is False
        failed = next(entry for entry in waited["jobs"] if entry["job_id"] == ids[2])
        assert (failed["state"], failed["exit_code"]) == ("exited", 3)
        assert {entry["state"] for entry in waited["jobs"] if entry["job_id"] != ids[2]} == {"running"}

        killed = _served(await client.call_tool("kill", {"job_ids": [i[:8] for i in ids]}))
    states = {entry["job_id"]: entry["state"] for entry in killed["jobs"]}
    assert states == {job_id: "exited" if job_id == ids[2] else "killed" for job_id in ids}


async def test_a_catastrophic_until_regex_ends_the_call_and_blocks_nothing(stdio_server, jobs: Jobs) -> None:
    launched = jobs.run(command="head -c 20000 /dev/zero | tr '\\0' x; echo; exec sleep 60", wait_seconds=0)
    job_id = launched.job_id
    jobs.wait(job_id=job_id, until={"pattern": "xxxx"}, wait_seconds=20)
    answered: list[str] = []
    async with Client(stdio_server(), mode="legacy") as client:

        async def wait() -> None:
            until = {"pattern": "(x+x+)+y", "match_type": "regex"}
            result = await client.call_tool("wait", {"job_id": job_id, "until": until, "wait_seconds": 20})
            answered.append("wait")
            assert result.is_error and result.structured_content["error"]["code"] == "pattern_timeout"

        async def others() -> None:
            for _ in range(3):
                assert not (await client.call_tool("snapshot", {"job_id": job_id, "tail_lines": 1})).is_error
            answered.append("others")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(0)
                tg.start_soon(others)
    assert answered == ["others", "wait"]
    assert jobs.snapshot(job_id=job_id).state == "running"
    jobs.kill(job_id=job_id)


def test_a_line_already_written_returns_at_once(jobs: Jobs) -> None:
    job_id = jobs.run(command="printf 'a\\nb\\n' >&2; echo ready; exec sleep 60", wait_seconds=0).job_id
    jobs.wait(job_id=job_id, until={"pattern": "ready"}, wait_seconds=20)
    begun = time.monotonic()
    again = jobs.wait(job_id=job_id, until={"pattern": "^b$", "match_type": "regex", "stream": "stderr"})
    assert time.monotonic() - begun < 5
    assert again.matched is not None
    assert again.matched.model_dump() == {"stream": "stderr", "line": "b", "line_number": 2, "offset": 2}
    assert not again.timed_out
    jobs.kill(job_id=job_id)


def test_a_line_counts_once_it_is_whole(jobs: Jobs, tmp_path: Path) -> None:
    gate = Fifo(tmp_path / "gate")
    job_id = jobs.run(command=f"printf 'half'; read x < {gate}; echo ' done'; exec sleep 60", wait_seconds=0).job_id
    early = jobs.wait(job_id=job_id, until={"pattern": "half"}, wait_seconds=0.5)
    assert (early.matched, early.timed_out) == (None, True)
    gate.write()
    whole = jobs.wait(job_id=job_id, until={"pattern": "half"}, wait_seconds=20)
    assert whole.matched is not None and whole.matched.line == "half done"
    jobs.kill(job_id=job_id)


def test_run_and_start_return_at_the_line(jobs: Jobs) -> None:
    ran = jobs.run(command="echo up; exec sleep 60", until={"pattern": "up"}, wait_seconds=20)
    assert (ran.state, ran.matched and ran.matched.line) == ("running", "up")
    created = jobs.create(command="echo go; exec sleep 60").job_id
    started = jobs.start(job_id=created, until={"pattern": "go", "stream": "stdout"}, wait_seconds=20)
    assert started.matched is not None and started.matched.line_number == 1
    jobs.kill(job_ids=[ran.job_id, created])


def test_a_job_that_ends_without_the_line(jobs: Jobs) -> None:
    payload = jobs.run(command="echo nope; exit 4", until={"pattern": "Listening"}, wait_seconds=20)
    assert (payload.state, payload.exit_code, payload.matched) == ("exited", 4, None)


def test_wait_all_and_the_order_of_ends(jobs: Jobs, tmp_path: Path) -> None:
    gates = [Fifo(tmp_path / f"g{i}") for i in range(3)]
    ids = [jobs.run(command=f"read x < {g}", wait_seconds=0).job_id for g in gates]
    for i in (1, 0, 2):
        gates[i].write()
        jobs.wait(job_id=ids[i], wait_seconds=20)
    payload = jobs.wait(job_ids=ids, mode="all", wait_seconds=20)
    assert payload.timed_out is False
    assert payload.ended == [ids[1], ids[0], ids[2]]
    assert payload.jobs is not None and [e.job_id for e in payload.jobs] == ids


def test_wait_many_until_applies_to_each_job(jobs: Jobs) -> None:
    ids = [jobs.run(command=f"echo ready {i}; exec sleep 60", wait_seconds=0).job_id for i in range(3)]
    payload = jobs.wait(job_ids=ids, mode="all", until={"pattern": "ready"}, wait_seconds=20)
    assert payload.timed_out is False and payload.jobs is not None
    assert [e.matched and e.matched.line for e in payload.jobs] == [f"ready {i}" for i in range(3)]
    killed = jobs.kill(job_ids=ids)
    assert killed.jobs is not None and {e.state for e in killed.jobs} == {"killed"}


def test_many_jobs_time_out_while_all_run(jobs: Jobs) -> None:
    ids = [jobs.run(command="exec sleep 60", wait_seconds=0, tags=["slow"]).job_id for _ in range(2)]
    payload = jobs.wait(tags=["slow"], wait_seconds=0.2)
    assert (payload.timed_out, payload.ended) == (True, [])
    jobs.kill(tags=["slow"])
    assert all(jobs.snapshot(job_id=i).state == "killed" for i in ids)


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"job_id": "abcd", "job_ids": ["abcd"]},
        {"job_ids": ["abcd"], "tags": ["x"]},
        {"job_ids": []},
        {"job_ids": ["abcd"] * 101},
        {"job_id": "abcd", "until": {"pattern": "("}, "match_type": "regex"},
        {"job_id": "abcd", "until": {"pattern": "(", "match_type": "regex"}},
        {"job_id": "abcd", "until": {"pattern": ""}},
        {"job_id": "abcd", "until": {"pattern": "x", "stream": "both"}},
        {"job_ids": ["abcd"], "mode": "some"},
    ],
)
def test_bad_inputs_are_refused(jobs: Jobs, args: dict[str, Any]) -> None:
    with pytest.raises(JobError) as err:
        jobs.wait(**args)
    assert err.value.code == "invalid_input"


def test_kill_needs_exactly_one_way_to_name_jobs(jobs: Jobs) -> None:
    job_id = jobs.run(command="exec sleep 60", wait_seconds=0).job_id
    with pytest.raises(JobError) as err:
        jobs.kill(job_id=job_id, tags=["x"])
    assert err.value.code == "invalid_input"
    assert jobs.snapshot(job_id=job_id).state == "running"
    jobs.kill(job_id=job_id)


def test_tags_that_match_nothing(jobs: Jobs) -> None:
    with pytest.raises(JobError) as err:
        jobs.wait(tags=["nothing.here"])
    assert err.value.code == "job_not_found"
