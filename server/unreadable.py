"""Answers for the stdio lines the SDK cannot read, which it would otherwise drop without a word.

The SDK's stdio reader hands a line it cannot validate (not JSON, not JSON-RPC, or nested deeper
than pydantic's JSON parser allows, about 200 levels) to the server as an exception, and the
server only logs it at debug level: the client waits forever for its answer. :class:`AnsweringReader`
sits between the two, logs each such line and answers it: a ``tools/call`` gets an
``invalid_input`` tool result, any other request a JSON-RPC error, both with the request's id,
found by scanning the line's top level without parsing what is nested below it. A notification
or a response gets no answer (JSON-RPC forbids one); a line without a readable id gets a parse
error with a null id.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from types import TracebackType
from typing import Any

import anyio
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, JSONRPCResponse
from pydantic import ValidationError

from .tools import error_result

log = logging.getLogger("agent_jobs.server")

#: A JSON string, or one structural character; everything else (numbers, literals, spaces) is skipped.
_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}:,]', re.DOTALL)
#: How much of a bad value an error message quotes.
QUOTE_CHARS = 60


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, counted without recursion."""
    depth = deepest = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def members(text: str) -> dict[str, str]:
    """The raw text of each member of the JSON object ``text``, by name; nested values are not parsed.

    Best effort on broken JSON: what cannot be read is left out.
    """
    found: dict[str, str] = {}
    if not text.lstrip().startswith("{"):
        return found
    depth = 0
    last_string: str | None = None
    name: str | None = None
    value_start = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token.startswith('"'):
            if depth == 1 and name is None:
                last_string = token
        elif token in "[{":
            depth += 1
        elif depth == 1 and token == ":" and last_string is not None:
            try:
                name = json.loads(last_string)
            except ValueError:
                return found
            value_start = match.end()
        elif depth == 1 and token in ",}":
            if name is not None:
                found[name] = text[value_start : match.start()].strip()
            name = last_string = None
            if token == "}":
                break
        elif token in "]}":
            depth -= 1
    return found


def _shallow(raw: str | None) -> Any:
    """The JSON value ``raw`` if it is flat enough to parse safely, else None."""
    if raw is None or nesting_depth(raw) > 2:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _request_id(value: Any) -> int | str | None:
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None


def _deepest_argument(arguments: str) -> tuple[str, str]:
    """The name and raw text of the most deeply nested member of the ``arguments`` object."""
    fields = members(arguments)
    if not fields:
        return "arguments", arguments
    name = max(fields, key=lambda k: nesting_depth(fields[k]))
    return name, fields[name]


def _quote(raw: str) -> str:
    return raw if len(raw) <= QUOTE_CHARS else raw[:QUOTE_CHARS] + "..."


def _error(code: int, problem: str) -> ErrorData:
    kind = "Parse error" if code == PARSE_ERROR else "Invalid request"
    return ErrorData(code=code, message=f"{kind}: {problem}")


def answer(line: str | None, parsed: dict[str, Any] | None, problem: str) -> SessionMessage | None:
    """The reply to a line the SDK could not read: ``line`` is its raw text, or ``parsed`` its JSON."""
    if parsed is not None:
        request_id, method = _request_id(parsed.get("id")), parsed.get("method")
        params = parsed.get("params") if isinstance(parsed.get("params"), dict) else {}
        tool = params.get("name")
        field, value = "params", json.dumps(params)[:QUOTE_CHARS]
    else:
        top = members(line or "")
        request_id, method = _request_id(_shallow(top.get("id"))), _shallow(top.get("method"))
        params_members = members(top.get("params", ""))
        tool = _shallow(params_members.get("name"))
        field, value = _deepest_argument(params_members.get("arguments", "")) if tool else ("params", "")
    code = PARSE_ERROR if line is not None else INVALID_REQUEST
    keys = parsed if parsed is not None else members(line or "")
    if method is None and ("result" in keys or "error" in keys):
        return None  # the client's response to a request of ours: JSON-RPC forbids a reply
    if request_id is None:
        if method is not None and "id" not in keys:
            return None  # a notification: JSON-RPC forbids a reply
        reply: Any = JSONRPCError(jsonrpc="2.0", id=None, error=_error(code, problem))
    elif method == "tools/call" and isinstance(tool, str):
        message = f"{field}: {problem} (got {_quote(value)})" if value else f"{field}: {problem}"
        result = error_result("invalid_input", message, details={"field": field})
        reply = JSONRPCResponse(
            jsonrpc="2.0", id=request_id, result=result.model_dump(by_alias=True, mode="json", exclude_none=True)
        )
    else:
        reply = JSONRPCError(jsonrpc="2.0", id=request_id, error=_error(code, problem))
    return SessionMessage(reply)


def describe(exc: Exception, line: str | None) -> str:
    """What is wrong with the line, in words a client can act on."""
    if line is not None:
        if "recursion limit" in str(exc):
            return f"the request is nested {nesting_depth(line)} levels deep, too deep to read"
        return "not valid JSON"
    return "not a valid JSON-RPC message"


class AnsweringReader:
    """The server's read stream: the SDK's, with the exceptions it carries answered and left out.

    Duck-types the SDK's context-carrying receive stream (``last_context`` included), so the
    server sees only readable messages, each with its sender's context.
    """

    def __init__(self, inner: Any, writer: Any) -> None:
        self._inner = inner
        self._writer = writer

    @property
    def last_context(self) -> contextvars.Context | None:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage:
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item
            await self._answer(item)

    async def _answer(self, exc: Exception) -> None:
        line: str | None = None
        parsed: dict[str, Any] | None = None
        if isinstance(exc, ValidationError):
            # A line that is not JSON is the input of the first error; a message of the wrong
            # shape is the input of the errors about its missing members.
            inputs = [error.get("input") for error in exc.errors()]
            if inputs and isinstance(inputs[0], str):
                line = inputs[0]
            else:
                parsed = next((i for i in inputs if isinstance(i, dict)), None)
        problem = describe(exc, line)
        reply = answer(line, parsed, problem)
        log.warning(
            "unreadable message (%s, %d characters): %s",
            problem,
            len(line) if line is not None else -1,
            "answered" if reply is not None else "a notification, not answered",
        )
        if reply is None:
            return
        try:
            await self._writer.send(reply)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.debug("no answer sent: the connection is closing")

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> AnsweringReader:
        return self

    async def __anext__(self) -> SessionMessage:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> AnsweringReader:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
