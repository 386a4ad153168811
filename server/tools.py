"""The MCP tools: one row per tool over jobcore's table of verbs, one :class:`JobTool` class that runs them all.

Why a Tool subclass: the SDK's own tools validate the arguments against a function signature
and answer a bad call with pydantic's text. Every input error, unknown fields and wrong types
included, must come back as the ``invalid_input`` envelope, and jobcore already validates
strictly (before touching the disk). So :meth:`JobTool.run` hands the client's raw arguments
dict straight to jobcore and turns the outcome, payload or :class:`JobError`, into the result.
``MCPServer(tools=[...])`` takes these objects as they are; listing, dispatch, cancellation and
transports stay the SDK's.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import ConfigDict, Field

from jobcore import VERBS, AsyncJobs, ErrorInfo, ErrorPayload, JobError, Policy, Verb

from . import schemas

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context

log = logging.getLogger("agent_jobs.tools")

#: Seconds between two progress notifications while a call waits.
PROGRESS_INTERVAL_S = 1.0
#: Starts the description of a tool a read-only server lists but refuses, so an agent does not try it.
READ_ONLY_PREFIX = "Refused by this server's policy (read-only). "


@dataclass(frozen=True)
class ToolDef:
    """One tool: what is the server's own (name, title, description, hints) over a jobcore verb.

    The verb's entry in jobcore's table gives the input and payload models, the ``wait_seconds``
    default and whether the tool changes anything.
    """

    name: str
    verb: Verb
    title: str
    description: str
    destructive: bool = False
    idempotent: bool = False

    @property
    def waits(self) -> bool:
        return self.verb.wait_default_s is not None


TOOLS: tuple[ToolDef, ...] = (
    ToolDef(
        "create_job",
        VERBS["create"],
        "Create a job",
        "Define a job without starting it (state `created`). Start it with start_job, or run_job does both.",
    ),
    ToolDef(
        "start_job",
        VERBS["start"],
        "Start a created job",
        "Start a `created` job and watch it up to wait_seconds ({wait}): returns at its end (exit code, "
        "output), an until match, or the deadline. Other jobs are refused.",
    ),
    ToolDef(
        "run_job",
        VERBS["run"],
        "Run a command as a job",
        "Run a command as a durable background job (create + start). Returns at its end (exit code, output "
        "tail), an until match (matched), or after wait_seconds ({wait}; 0: at once).",
    ),
    ToolDef(
        "snapshot",
        VERBS["snapshot"],
        "Read a job's state and output",
        "A job's state, exit code, times and last stdout/stderr lines (head_lines: first too). "
        "With stdout_offset/stderr_offset: bytes from there; a range's end is the next offset.",
        idempotent=True,
    ),
    ToolDef(
        "search_output",
        VERBS["search"],
        "Find lines in a job's output",
        "Lines of a job's stdout/stderr matching pattern (text, or regex per match_type), with stream, "
        "line_number, offset and context. When truncated, go on from next_stdout_offset/next_stderr_offset.",
        idempotent=True,
    ),
    ToolDef(
        "wait",
        VERBS["wait"],
        "Wait for jobs to end",
        "Wait up to wait_seconds ({wait}) for a job to end (exit code, output) or an until match "
        "(matched); else timed_out. job_ids or tags: mode any/all, jobs and ended. Jobs are never touched.",
        idempotent=True,
    ),
    ToolDef(
        "kill",
        VERBS["kill"],
        "Signal jobs",
        "Signal (default SIGTERM) a job's processes (job_ids or tags: several), SIGKILL after "
        "kill_after. Returns the state seen within wait_seconds ({wait}).",
        destructive=True,
    ),
    ToolDef(
        "list_jobs",
        VERBS["list"],
        "List jobs",
        "List jobs, newest first (state, command, cwd, tags, exit code, times, backend): those under the "
        "server's cwd, or pass cwd or all: true; filter by state or tags. When truncated, pass next_cursor as cursor.",
        idempotent=True,
    ),
    ToolDef(
        "restart_job",
        VERBS["restart"],
        "Restart a job",
        "Run a job's definition again under its job_id: kills what lives of it, clears its logs, starts "
        "and watches it like start_job ({wait}). A `created` job just starts.",
        destructive=True,
    ),
    ToolDef(
        "delete_job",
        VERBS["delete"],
        "Delete jobs",
        "Remove job directories and logs: one by job_id (ended or `created`), or every ended job finished "
        "longer ago than finished_older_than. Live jobs are skipped; dry_run only reports.",
        destructive=True,
    ),
    ToolDef(
        "tag_job",
        VERBS["tag"],
        "Set a job's tags",
        "Replace a job's tags (labels such as 'ci' or 'project.build'). list_jobs filters by tag ('a.*': a namespace).",
        idempotent=True,
    ),
)


@dataclass(frozen=True)
class WaitPolicy:
    """The server's wait default and cap (``AGENT_JOBS_DEFAULT_WAIT_SECONDS``, ``AGENT_JOBS_MAX_WAIT_SECONDS``)."""

    default_s: float | None = None
    cap_s: float = 55.0

    def default_for(self, tool: ToolDef) -> float:
        assert tool.verb.wait_default_s is not None
        default = tool.verb.wait_default_s if self.default_s is None else self.default_s
        return min(default, self.cap_s)

    def apply(self, tool: ToolDef, arguments: dict[str, Any]) -> dict[str, Any]:
        """Fill an absent ``wait_seconds`` with the default; lower one above the cap to the cap.

        A value of the wrong type (null included), negative or not finite is left alone for jobcore to refuse.
        """
        if not tool.waits:
            return arguments
        if "wait_seconds" not in arguments:
            return {**arguments, "wait_seconds": self.default_for(tool)}
        if lowered := self.lowered_to(tool, arguments):
            log.info("%s: wait_seconds %s lowered to the cap %s", tool.name, arguments["wait_seconds"], self.cap_s)
            return {**arguments, **lowered}
        return arguments

    def lowered_to(self, tool: ToolDef, arguments: dict[str, Any]) -> dict[str, int | float] | None:
        """``{"wait_seconds": cap}`` when the call asks for a longer wait than the cap, for the payload to say so."""
        value = arguments.get("wait_seconds")
        if not tool.waits or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if value > self.cap_s:  # exact for ints of any size, no float conversion
            return {"wait_seconds": int(self.cap_s) if float(self.cap_s).is_integer() else self.cap_s}
        return None

    def describe(self, tool: ToolDef) -> str:
        return f"default {self.default_for(tool):g} s, at most {self.cap_s:g} s"


def result(payload: dict[str, Any], is_error: bool) -> CallToolResult:
    text = json.dumps(payload, ensure_ascii=False)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=payload, is_error=is_error)


def error_result(code: str, message: str, *, retryable: bool = False, details: dict[str, Any] | None = None):
    envelope = ErrorPayload(error=ErrorInfo(code=code, message=message, retryable=retryable, details=details))
    return result(envelope.to_dict(), True)


async def invoke(
    tool: ToolDef, jobs: AsyncJobs, arguments: dict[str, Any], lowered: dict[str, int | float] | None = None
) -> CallToolResult:
    """Run the tool's jobcore verb; every outcome but cancellation becomes a result.

    ``lowered`` holds the inputs the server lowered before jobcore saw them: the payload's
    ``lowered_to`` names them beside the ones jobcore lowered itself.
    """
    try:
        payload = await jobs.call(tool.verb, arguments)
    except JobError as exc:
        log.info("%s refused: %s: %s", tool.name, exc.code, exc.message)
        return error_result(exc.code, exc.message, retryable=exc.retryable, details=exc.details)
    except Exception as exc:
        log.exception("%s failed unexpectedly", tool.name)
        return error_result("internal_error", f"{tool.name} failed: {type(exc).__name__}: {exc}")
    if lowered:
        payload = payload.model_copy(update={"lowered_to": {**(getattr(payload, "lowered_to", None) or {}), **lowered}})
    return result(payload.to_dict(), False)


async def _tick_progress(context: Context, total: float | None) -> None:
    """``notifications/progress`` about once a second."""
    started = time.monotonic()
    while True:
        await anyio.sleep(PROGRESS_INTERVAL_S)
        waited = round(time.monotonic() - started, 1)
        message = f"waiting for the job: {waited:g} s" + (f" of {total:g} s" if total is not None else "")
        try:
            await context.report_progress(waited, total, message)
        except Exception:
            log.debug("progress notification not sent", exc_info=True)
            return


def wants_progress(context: Context) -> bool:
    """The request carries a progress token: the client asked for ``notifications/progress``."""
    try:
        meta = context.request_context.meta
    except ValueError:  # called outside a request (MCPServer.call_tool without one)
        return False
    return meta is not None and meta.get("progress_token") is not None


class JobTool(Tool):
    """A job tool: the SDK lists it as it is and calls :meth:`run` with the raw arguments."""

    fn: Callable[..., Any] | None = Field(None, exclude=True)
    fn_metadata: FuncMetadata | None = None
    is_async: bool = True
    tool: ToolDef = Field(exclude=True)
    jobs: AsyncJobs = Field(exclude=True)
    waits: WaitPolicy = Field(exclude=True)
    result_schema: dict[str, Any] = Field(exclude=True)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def output_schema(self) -> dict[str, Any] | None:
        return self.result_schema

    async def run(self, arguments: dict[str, Any], context: Context, convert_result: bool = False) -> CallToolResult:
        if not isinstance(arguments, dict):
            return error_result("invalid_input", f"arguments must be an object (got {type(arguments).__name__})")
        lowered = self.waits.lowered_to(self.tool, arguments)
        arguments = self.waits.apply(self.tool, arguments)
        total = arguments.get("wait_seconds")
        total = total if isinstance(total, int | float) and not isinstance(total, bool) else None
        if not self.tool.waits or (total is not None and total < PROGRESS_INTERVAL_S) or not wants_progress(context):
            # Over before a first progress, or nobody asked for it: no ticker task, no wake-up a
            # second (a thousand kills at once would each tick while they wait).
            return await invoke(self.tool, self.jobs, arguments, lowered)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_tick_progress, context, total)
            result = await invoke(self.tool, self.jobs, arguments, lowered)
            tg.cancel_scope.cancel()
        return result


def build_tools(jobs: AsyncJobs, waits: WaitPolicy, policy: Policy | None = None) -> list[JobTool]:
    """Every job tool; under a read-only policy all are still listed, the refused ones saying so first."""
    tools = []
    for tool in TOOLS:
        overrides = {}
        description = tool.description
        read_only = tool.verb.read_only
        if policy is not None and policy.read_only and not read_only:
            description = READ_ONLY_PREFIX + description
        if tool.waits:
            bounds = waits.describe(tool)
            description = description.format(wait=bounds)
            overrides["wait_seconds"] = f"Seconds to watch ({bounds})."
        annotations = ToolAnnotations(
            title=tool.title,
            read_only_hint=read_only,
            destructive_hint=None if read_only else tool.destructive,
            idempotent_hint=tool.idempotent,
        )
        tools.append(
            JobTool(
                name=tool.name,
                title=tool.title,
                description=description,
                parameters=schemas.input_schema(tool.verb.inputs, overrides),
                annotations=annotations,
                tool=tool,
                jobs=jobs,
                waits=waits,
                result_schema=schemas.output_schema(tool.verb.payload),
            )
        )
    return tools
