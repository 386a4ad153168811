"""One table of verbs: what a client is shown is generated from the very models that validate its call."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from mcp import Client

from jobcore import VERBS, JobError, Jobs
from jobcore.inputs import parse
from server import config, schemas
from server.app import build_server
from server.tools import TOOLS


def refusal(call: typing.Callable[..., object], **args: object) -> tuple[str, str, object]:
    with pytest.raises(JobError) as refused:
        call(**args)
    return refused.value.code, refused.value.message, refused.value.details


def test_every_tool_is_a_verb_of_the_table() -> None:
    assert {tool.verb.name for tool in TOOLS} == set(VERBS)
    assert all(tool.verb is VERBS[tool.verb.name] for tool in TOOLS)


@pytest.mark.anyio
async def test_the_listed_schemas_are_the_verbs_models(job_root: Path) -> None:
    mcp = build_server(config.parse(["--root", str(job_root)], {}))
    async with Client(mcp, mode="legacy") as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    for tool in TOOLS:
        verb = VERBS[tool.verb.name]
        shown = listed[tool.name]
        overrides = {}
        if verb.wait_default_s is not None:  # the server states its own wait default and cap
            overrides["wait_seconds"] = shown.input_schema["properties"]["wait_seconds"]["description"]
        assert shown.input_schema == schemas.input_schema(verb.inputs, overrides), tool.name
        assert shown.output_schema == schemas.output_schema(verb.payload), tool.name


def test_each_verb_runs_on_its_models() -> None:
    for verb in VERBS.values():
        hints = typing.get_type_hints(verb.run)
        given, returned = [hints[name] for name in hints if name not in ("ctx", "return")], hints["return"]
        assert given == [verb.inputs], verb.name
        assert verb.payload in (returned, *typing.get_args(returned)), verb.name


def test_jobs_validates_with_the_tables_models(job_root: Path) -> None:
    """Field by field, each verb's method refuses exactly as its table model does, unknown fields included."""
    jobs = Jobs(job_root)
    every_field = {name for verb in VERBS.values() for name in verb.inputs.model_fields}
    for verb in VERBS.values():
        for name in sorted(every_field):
            for wrong in ({name: [[]]}, {"job_id": "abcd", name: [[]]}):  # [[]]: wrong for every field there is
                expected = refusal(parse, model=verb.inputs, data=wrong)
                assert refusal(getattr(jobs, verb.name), **wrong) == expected, (verb.name, wrong)
    assert jobs.store.job_ids() == []
