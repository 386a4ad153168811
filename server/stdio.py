"""The stdio transport, read and written by the event loop itself.

The SDK's transport reads each line and writes each reply through a worker thread: two or
three thread hops per message, each waiting for the GIL behind whatever else runs. With a
thousand calls in flight a ping waited behind every line before it, seconds in all. Here
the loop reads stdin in large chunks as soon as it is readable and writes replies with
non-blocking writes, so a message costs no thread at all (see docs/performance.md).

It serves pipes and sockets, the way MCP clients start a server; for anything else (a
terminal, a file) :func:`stdio_streams` falls back to the SDK's transport. Like the SDK's,
it moves the wire off fds 0 and 1 while serving (stdin reads /dev/null, stdout goes to
stderr), so nothing else in the process can read from or write onto the wire by mistake.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp.server.stdio import stdio_server
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage

#: Bytes read from stdin at a time.
READ_CHUNK = 1 << 16


def _is_pipe_or_socket(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


@contextmanager
def _claimed(fd: int, diversion: int):
    """A private descriptor of the wire behind ``fd``, while ``fd`` points at ``diversion``."""
    private = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    try:
        os.dup2(diversion, fd)
        try:
            yield private
        finally:
            os.dup2(private, fd)
    finally:
        os.close(private)


def parse_line(line: bytes) -> SessionMessage | Exception:
    """One line of stdin as a message, or the exception saying why it is none (as the SDK hands it on)."""
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line.decode("utf-8", "replace")))
    except Exception as exc:
        return exc


async def _read_lines(fd: int, sink: Any) -> None:
    async with sink:
        pending: list[bytes] = []  # the start of a line longer than a chunk, joined once it ends
        while True:
            await anyio.wait_readable(fd)
            try:
                chunk = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                break
            *lines, tail = chunk.split(b"\n")
            if lines:
                lines[0] = b"".join([*pending, lines[0]])
                pending = []
            pending.append(tail)
            for line in lines:
                await sink.send(parse_line(line))
        if (last := b"".join(pending)).strip():
            await sink.send(parse_line(last))


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await anyio.wait_writable(fd)


async def _write_messages(fd: int, source: Any) -> None:
    """Each reply as one line; replies queued meanwhile go out in the same write."""
    async with source:
        async for message in source:
            batch = [message]
            while True:
                try:
                    batch.append(source.receive_nowait())
                except anyio.WouldBlock:
                    break
            data = "".join(m.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n" for m in batch)
            try:
                await _write_all(fd, data.encode())
            except BrokenPipeError:
                return  # the client is gone; reading stdin ends too


@asynccontextmanager
async def stdio_streams() -> AsyncIterator[tuple[Any, Any]]:
    """(read stream, write stream) of the MCP session over this process's stdin and stdout."""
    if not (_is_pipe_or_socket(0) and _is_pipe_or_socket(1)):
        async with stdio_server() as streams:
            yield streams
        return
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _claimed(0, devnull) as wire_in, _claimed(1, 2) as wire_out:
            was_blocking = os.get_blocking(wire_out)
            os.set_blocking(wire_out, False)
            try:
                read_sink, read_stream = create_context_streams[SessionMessage | Exception](0)
                # A plain stream: the writer needs no sender's context, and it drains what is queued.
                write_stream, write_source = anyio.create_memory_object_stream[SessionMessage](0)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_read_lines, wire_in, read_sink)
                    tg.start_soon(_write_messages, wire_out, write_source)
                    yield read_stream, write_stream
            finally:
                os.set_blocking(wire_out, was_blocking)
    finally:
        os.close(devnull)
