"""The supervisor's JSON (on ``_json`` alone) writes and reads what the json package does."""

from __future__ import annotations

import json

import pytest

from jobcore.supervisor import fsio

DOCUMENTS = [
    {"job": {"id": "ab" * 16, "status": "exited"}, "result": {"exit_code": 0, "signal": None}},
    {"command": ["printf", "%s\n", 'é ☃ \x00 \t "q" \\'], "tags": [], "env": {}, "n": -3, "f": 2.5e-300},
    {"deep": [[[]], [{}], [{"a": [True, False, None]}]]},
    [],
    "text",
    12345678901234567890,
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_round_trip_matches_the_json_package(document: object) -> None:
    assert fsio.dumps(document) == json.dumps(document, indent=2)
    assert json.loads(fsio.dumps(document, indent=None)) == document
    assert fsio.loads(json.dumps(document, ensure_ascii=False)) == document


@pytest.mark.parametrize("text", ["", "{", "{}x", "[1,]", "nul", '{"a" 1}'])
def test_bad_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        fsio.loads(text)


def test_values_json_cannot_hold_are_refused() -> None:
    for value in (float("nan"), float("inf"), {1, 2}, b"bytes"):
        with pytest.raises((ValueError, TypeError)):
            fsio.dumps(value)
