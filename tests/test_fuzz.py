"""Generated tool calls against one stdio server: every call is answered, in time, with a well-formed
envelope; input outside a tool's inputSchema is ``invalid_input``; a refused call creates nothing.

Calls are drawn from each tool's own inputSchema (``hypothesis-jsonschema``), then mutated: a field
replaced by arbitrary JSON, an unknown field added, a required one dropped, or the whole arguments
replaced by an arbitrary object. The server runs under a policy that keeps what a generated call can
do inside a scratch folder: commands only from a PATH that holds ``sh`` alone, no absolute program
paths, every path under the scratch folder, and waits capped to a fraction of a second.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from conftest import REPO, _kill_leftovers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator
from mcp import Client, StdioServerParameters

#: A call must be answered within this many seconds (the server's waits are capped far below it).
ANSWER_WITHIN_S = 5.0
#: Generated calls per tool; with eleven tools, a few hundred calls in all.
CALLS_PER_TOOL = 30
#: Errors a refused call may give and that must leave the store as it was.
REFUSALS = {"invalid_input", "policy_denied", "job_not_found", "ambiguous_job_id", "stdin_too_large"}

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


class Server:
    """One stdio server and an SDK client, driven from synchronous Hypothesis tests through a portal."""

    def __init__(self, portal: BlockingPortal, client: Client, root: Path) -> None:
        self.portal = portal
        self.client = client
        self.root = root
        tools = portal.call(client.list_tools).tools
        self.inputs = {t.name: t.input_schema for t in tools}
        self.outputs = {t.name: Draft202012Validator(t.output_schema) for t in tools}

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        async def call() -> Any:
            with anyio.fail_after(ANSWER_WITHIN_S):
                return await self.client.call_tool(name, arguments)

        result = self.portal.call(call)
        payload = result.structured_content
        assert isinstance(payload, dict), f"{name} {arguments!r}: no structured result"
        problems = [e.message for e in self.outputs[name].iter_errors(payload)]
        assert not problems, f"{name} {arguments!r}: payload off its outputSchema: {problems[:3]}"
        assert json.loads(result.content[0].text) == payload
        assert bool(result.is_error) == (payload["ok"] is False)
        return payload

    def entries(self) -> set[str]:
        """The store's entries, less the fork server's socket and lock: the fork server, started
        by an earlier launch, creates and removes them on its own schedule, not a call's."""
        names = set(os.listdir(self.root)) if self.root.exists() else set()
        return {name for name in names if not name.startswith(".forkserver.")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("fuzz")
    root, work, bin_dir = base / "jobs", base / "work", base / "bin"
    work.mkdir()
    bin_dir.mkdir()
    os.symlink(shutil.which("sh") or "/bin/sh", bin_dir / "sh")
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            *("-m", "server", "serve", "--root", str(root)),
            *("--allow-root", str(base), "--deny-command", "*/*", "--pass-env", "PATH"),
        ],
        env={
            "PYTHONPATH": str(REPO),
            "PATH": str(bin_dir),
            "HOME": str(work),
            "AGENT_JOBS_MAX_WAIT_SECONDS": "0.2",
        },
        cwd=str(work),
    )
    with start_blocking_portal() as portal:
        try:
            with portal.wrap_async_context_manager(Client(params, mode="legacy")) as client:
                yield Server(portal, client, root)
        finally:
            _kill_leftovers(root)


def _calls(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments drawn from the schema, and the same mutated out of it."""
    valid = from_schema(schema)
    names = list(schema.get("properties", {}))

    @st.composite
    def replace_one(draw: st.DrawFn) -> dict[str, Any]:
        args = draw(valid)
        return {**args, draw(st.sampled_from(names)): draw(JSON_VALUES)} if names else args

    @st.composite
    def drop_one(draw: st.DrawFn) -> dict[str, Any]:
        args = draw(valid)
        if not args:
            return args
        dropped = draw(st.sampled_from(sorted(args)))
        return {k: v for k, v in args.items() if k != dropped}

    return st.one_of(
        valid,
        replace_one(),
        drop_one(),
        valid.map(lambda args: {**args, "not_a_field": 1}),
        st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=5),
    )


def _check(server: Server, name: str, arguments: dict[str, Any]) -> None:
    before = server.entries()
    payload = server.call(name, arguments)
    conforms = Draft202012Validator(server.inputs[name]).is_valid(arguments)
    if not conforms:
        assert payload["ok"] is False, f"{name} {arguments!r} is off the inputSchema yet was accepted"
        assert payload["error"]["code"] == "invalid_input", payload
    if payload["ok"] is False and payload["error"]["code"] in REFUSALS:
        assert server.entries() == before, f"{name} {arguments!r} was refused yet changed the store"


TOOLS = [
    "run_job",
    "create_job",
    "start_job",
    "restart_job",
    "wait",
    "snapshot",
    "search_output",
    "kill",
    "list_jobs",
    "delete_job",
    "tag_job",
    "server_info",
]


@pytest.mark.parametrize("name", TOOLS)
def test_generated_calls_are_answered_well_formed(server: Server, name: str) -> None:
    @settings(
        max_examples=CALLS_PER_TOOL,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(arguments=_calls(server.inputs[name]))
    def check(arguments: dict[str, Any]) -> None:
        _check(server, name, arguments)

    check()
