"""The ``server_info`` tool: what this server is and the rules it serves under, for an agent to read.

An agent that knows the policy (read-only, allowed folders and commands) and the wait limits
in force can plan its calls instead of learning them from refusals.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from jobcore import MAX_BYTES_CAP, Payload, Policy

from . import schemas
from .tools import TOOLS, WaitPolicy, error_result, result

NAME = "server_info"


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_wait_seconds: float = Field(description="The longest wait_seconds honoured; a longer one is lowered to it.")
    default_wait_seconds: dict[str, float] = Field(
        description="Each waiting tool's wait_seconds when the call gives none."
    )
    max_bytes: int = Field(description="The most bytes of each log one snapshot or wait returns.")


class ServerInfoPayload(Payload):
    type: Literal["server_info"] = "server_info"
    version: str = Field(description="The agent-jobs version.")
    root: str = Field(description="The job store's folder.")
    policy: dict[str, Any] = Field(description="The rules jobs run under; refusals are policy_denied errors.")
    backend: str = Field(description="Where a job runs when it does not say: local or slurm.")
    limits: Limits


def server_version() -> str:
    try:
        return version("agent-jobs")
    except PackageNotFoundError:
        return "0.1.0"


def payload(root: str, policy: Policy, waits: WaitPolicy, backend: str = "local") -> ServerInfoPayload:
    defaults = {tool.name: waits.default_for(tool) for tool in TOOLS if tool.waits}
    return ServerInfoPayload(
        version=server_version(),
        root=root,
        policy=policy.describe(),
        backend=backend,
        limits=Limits(max_wait_seconds=waits.cap_s, default_wait_seconds=defaults, max_bytes=MAX_BYTES_CAP),
    )


class ServerInfoTool(Tool):
    """Answers every call with the same payload, made at start: nothing it reports changes while serving."""

    fn: Any = Field(None, exclude=True)
    fn_metadata: FuncMetadata | None = None
    is_async: bool = True
    info: dict[str, Any] = Field(exclude=True)
    result_schema: dict[str, Any] = Field(exclude=True)

    @property
    def output_schema(self) -> dict[str, Any] | None:
        return self.result_schema

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> CallToolResult:
        if not isinstance(arguments, dict):
            return error_result("invalid_input", f"arguments must be an object (got {type(arguments).__name__})")
        if arguments:
            field = sorted(arguments)[0]
            return error_result("invalid_input", f"{field}: server_info takes no inputs", details={"field": field})
        return result(self.info, False)


def build_info_tool(root: str, policy: Policy, waits: WaitPolicy, backend: str = "local") -> ServerInfoTool:
    return ServerInfoTool(
        name=NAME,
        title="Describe this server",
        description="This server's version, job store, policy (read-only, folders, commands, backends, "
        "environment, job cap), default backend and limits. Call it first to plan calls.",
        parameters={"type": "object", "properties": {}, "additionalProperties": False},
        annotations=ToolAnnotations(
            title="Describe this server", read_only_hint=True, destructive_hint=None, idempotent_hint=True
        ),
        info=payload(root, policy, waits, backend).to_dict(),
        result_schema=schemas.output_schema(ServerInfoPayload),
    )
