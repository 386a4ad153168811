"""Tool input and output JSON schemas, derived from jobcore's pydantic models (one source of truth).

pydantic's schemas are cleaned for MCP clients and models:

- titles are dropped (noise next to the field names);
- ``X | None = None`` fields lose their ``null`` branch: a client omits them rather than sending null,
  and a payload never carries null (optional fields are left out);
- in output schemas every field whose default is not None is ``required``, because ``to_dict()``
  always emits it, and defaults are dropped;
- each output schema is ``{"type": "object", "anyOf": [<success payload>, <error envelope>]}``, so a
  client that validates ``structuredContent`` (the Inspector does, errors included) accepts both.
"""

from __future__ import annotations

import copy
from typing import Any, Union

from pydantic import BaseModel, TypeAdapter

from jobcore import ErrorPayload

#: Descriptions for input fields that jobcore's models leave undescribed (each input must have one).
FALLBACK_DESCRIPTIONS = {
    "state": "Only jobs in this state.",
    "dry_run": "Report only; delete nothing.",
    "tags": "New tags, replacing the old ([] clears them).",
    "job_id": "Full job id or a unique prefix of 4+ characters.",
}

_SCHEMA_MAPS = ("properties", "$defs", "patternProperties")


def _drop_null_branch(node: dict[str, Any]) -> dict[str, Any]:
    """``{"anyOf": [X, {"type": "null"}], "default": None, ...}`` becomes ``X`` plus the other keys."""
    branches = node.get("anyOf")
    if not (isinstance(branches, list) and {"type": "null"} in branches and node.get("default", 0) is None):
        return node
    rest = [b for b in branches if b != {"type": "null"}]
    node = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
    if len(rest) == 1:
        return {**rest[0], **node}
    return {"anyOf": rest, **node}


def _clean(node: Any, *, output: bool) -> Any:
    if isinstance(node, list):
        return [_clean(item, output=output) for item in node]
    if not isinstance(node, dict):
        return node
    node = _drop_null_branch(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (output and key == "default"):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _clean(sub, output=output) for name, sub in value.items()}
        else:
            out[key] = _clean(value, output=output)
    if output and isinstance(node.get("properties"), dict):
        always = [name for name, sub in node["properties"].items() if sub.get("default", None) is not None]
        required = list(node.get("required", []))
        out["required"] = required + [name for name in always if name not in required]
    return out


def input_schema(model: type[BaseModel], descriptions: dict[str, str] | None = None) -> dict[str, Any]:
    """The tool's inputSchema: the model's validation schema, cleaned, every property described.

    ``descriptions`` replaces the description of the named fields (the server states its own wait
    default and cap for ``wait_seconds``).
    """
    schema = _clean(model.model_json_schema(mode="validation"), output=False)
    schema.pop("description", None)  # the model's docstring is for developers; the tool has its own
    for sub in schema.get("$defs", {}).values():
        sub.pop("description", None)  # the field using the model describes it
    for name, prop in schema.get("properties", {}).items():
        if descriptions and name in descriptions:
            prop["description"] = descriptions[name]
        elif "description" not in prop and name in FALLBACK_DESCRIPTIONS:
            prop["description"] = FALLBACK_DESCRIPTIONS[name]
    required = schema.get("required", [])
    props = schema.get("properties", {})
    schema["properties"] = {k: props[k] for k in sorted(props, key=lambda k: k not in required)}  # required first
    return {"type": "object", **{k: v for k, v in schema.items() if k != "type"}}


def output_schema(payload: type[BaseModel]) -> dict[str, Any]:
    """The tool's outputSchema: its payload or the error envelope, both with an object root."""
    union = TypeAdapter(Union[payload, ErrorPayload])  # noqa: UP007 - a runtime union of two classes
    schema = _clean(union.json_schema(mode="serialization"), output=True)
    return {"type": "object", **copy.deepcopy(schema)}
