"""Builds the MCP server on the SDK's ``MCPServer`` and serves it over stdio or HTTP (SSE, streamable HTTP).

Nothing here signals a job: jobs run under detached supervisors in their own sessions, so a
cancelled call, a closed connection or the server's exit leaves them running.
"""

from __future__ import annotations

import logging
import socket
import sys
from contextlib import AsyncExitStack
from typing import Any

from mcp.server.mcpserver import MCPServer
from starlette.types import Receive, Scope, Send

from jobcore import AsyncJobs

from . import access
from .config import Config
from .tools import WaitPolicy, build_tools

log = logging.getLogger("agent_jobs.server")

SSE_PATH = "/sse"
MESSAGE_PATH = "/messages/"
HTTP_PATH = "/mcp"

INSTRUCTIONS = """\
Durable background jobs. A job is a command run by a detached supervisor: it outlives this
connection and this server, its stdout/stderr are kept on disk, and it is addressed by job_id
(or a unique prefix of 4+ characters). run_job starts a command and waits briefly; if it is still
running, use wait (bounded, returns the moment it ends), snapshot (output so far, or from a byte
offset) and kill. list_jobs finds jobs again; delete_job removes old ones. Waits never stop a job.
Every result is a JSON payload with ok and type; errors carry error.code and error.message."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agent-jobs")
    except PackageNotFoundError:
        return "0.1.0"


def build_server(cfg: Config, *, base_url: str | None = None) -> MCPServer:
    """The MCPServer with the job tools; with a token, bearer auth on every HTTP route."""
    jobs = AsyncJobs(cfg.root)
    log.info("job store: %s", jobs.root)
    auth: dict[str, Any] = {}
    if cfg.token is not None:
        auth = {
            "token_verifier": access.StaticTokenVerifier(cfg.token),
            "auth": access.auth_settings(base_url or f"http://{cfg.host}:{cfg.port}"),
        }
    return MCPServer(
        "agent-jobs",
        title="agent-jobs",
        version=_version(),
        instructions=INSTRUCTIONS,
        tools=build_tools(jobs, WaitPolicy(cfg.default_wait_s, cfg.max_wait_s)),
        log_level=cfg.log_level.upper(),  # type: ignore[arg-type]
        **auth,
    )


async def serve_stdio(cfg: Config) -> None:
    """Serve one client on stdin/stdout until stdin closes."""
    await build_server(cfg).run_stdio_async()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, so the real port is known (``--port 0``) before the Host list is made."""
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    # A name with both (``localhost``): IPv4 first, the address clients and Host lists use most.
    family, kind, proto, _, address = min(infos, key=lambda info: info[0] != socket.AF_INET)
    # proto must say TCP: asyncio sets TCP_NODELAY only on such sockets, and without it small
    # SSE frames wait on delayed ACKs (about 40 ms a round trip).
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    """How a URL names the bound address; a wildcard bind (0.0.0.0, ::) is reached locally on loopback."""
    host = host.strip("[]")
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"[{host}]" if ":" in host else host


class HttpService:
    """SSE (``/sse`` + ``/messages/``) and/or streamable HTTP (``/mcp``) on one listening socket.

    The socket is bound and listening when the object is made, so clients may connect at once;
    :meth:`serve` answers them until :meth:`stop`.
    """

    def __init__(self, cfg: Config, sock: socket.socket | None = None) -> None:
        self.cfg = cfg
        self.sock = sock or bind(cfg.host, cfg.port)
        self.port: int = self.sock.getsockname()[1]
        self.base_url = f"http://{_url_host(cfg.host)}:{self.port}"
        self.mcp = build_server(cfg, base_url=self.base_url)
        security = access.transport_security(cfg, self.port)
        self._sse = self.mcp.sse_app(transport_security=security) if "sse" in cfg.transports else None
        self._http = (
            self.mcp.streamable_http_app(streamable_http_path=HTTP_PATH, transport_security=security)
            if "streamable-http" in cfg.transports
            else None
        )
        import uvicorn

        self._uvicorn = uvicorn.Server(
            uvicorn.Config(
                self,
                lifespan="off",  # the streamable-HTTP session manager is run in serve() instead
                log_config=None,  # keep the stderr logging set up by the CLI
                log_level=cfg.log_level,
                access_log=cfg.log_level == "debug",
                timeout_graceful_shutdown=2,
            )
        )

    @property
    def urls(self) -> dict[str, str]:
        urls = {}
        if self._sse is not None:
            urls["sse"] = self.base_url + SSE_PATH
        if self._http is not None:
            urls["streamable-http"] = self.base_url + HTTP_PATH
        return urls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if self._http is not None and (self._sse is None or path.rstrip("/") == HTTP_PATH):
            await self._http(scope, receive, send)
        else:
            assert self._sse is not None
            await self._sse_refusal_quiet(scope, receive, send)

    async def _sse_refusal_quiet(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The SDK's SSE endpoint raises after sending its 421/403; that is a refusal, not a crash."""
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            await send(message)

        try:
            await self._sse(scope, receive, tracking_send)  # type: ignore[misc]
        except ValueError as exc:
            if not (started and str(exc) == "Request validation failed"):
                raise
            log.warning("refused %s %s (Host or Origin not allowed)", scope.get("method"), scope.get("path"))

    async def serve(self) -> None:
        async with AsyncExitStack() as stack:
            if self._http is not None:
                await stack.enter_async_context(self.mcp.session_manager.run())
            for name, url in self.urls.items():
                # Always on stderr, whatever the log level: with --port 0 it is how a client learns the port.
                print(f"agent-jobs: serving {name} at {url}", file=sys.stderr, flush=True)
            await self._uvicorn.serve(sockets=[self.sock])

    def stop(self) -> None:
        """Ask :meth:`serve` to return (also before it has started)."""
        self._uvicorn.should_exit = True
