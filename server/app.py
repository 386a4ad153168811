"""Builds the MCP server on the SDK's ``MCPServer`` and serves it over stdio or HTTP (SSE, streamable HTTP).

Nothing here signals a job: jobs run under detached supervisors in their own sessions, so a
cancelled call, a closed connection or the server's exit leaves them running.
"""

from __future__ import annotations

import logging
import shlex
import socket
import sys
from contextlib import AsyncExitStack
from typing import Any

from mcp.server.mcpserver import MCPServer
from starlette.types import Receive, Scope, Send

from jobcore import AsyncJobs, Policy

from . import access
from .config import Config
from .info import build_info_tool, server_version
from .stdio import stdio_streams
from .tools import WaitPolicy, build_tools
from .unreadable import AnsweringReader

log = logging.getLogger("agent_jobs.server")

SSE_PATH = "/sse"
HTTP_PATH = "/mcp"

INSTRUCTIONS = """\
Durable background jobs. A job is a command run by a detached supervisor: it outlives this
connection and this server, its stdout/stderr are kept on disk, and it is addressed by job_id
(or a unique prefix of 4+ characters). run_job starts a command and waits briefly; if it is still
running, use wait (bounded, returns the moment it ends), snapshot (output so far, or from a byte
offset), search_output (lines matching a pattern, with context) and kill. create_job stores a
job to start later with start_job; restart_job runs a job again under the same id. list_jobs
finds jobs again (by state, tags or cwd); tag_job sets tags; delete_job removes old ones.
server_info shows this server's version, job store, limits and policy. Waits never stop a job.
Every result is a JSON payload with ok and type; errors carry error.code and error.message."""


def policy_summary(policy: Policy) -> str:
    """One or two sentences on the rules in force, for the instructions an agent reads first."""
    rules = []
    if policy.read_only:
        rules.append("read-only: only snapshot, search_output, wait, list_jobs and server_info are served")
    if policy.allowed_roots:
        rules.append("jobs run only under " + ", ".join(policy.allowed_roots))
    if policy.allow_commands:
        rules.append("only commands matching " + ", ".join(policy.allow_commands) + " run")
    if policy.deny_commands:
        rules.append("commands matching " + ", ".join(policy.deny_commands) + " are refused")
    if policy.pass_env is not None:
        rules.append("jobs inherit only the server variables matching " + (", ".join(policy.pass_env) or "nothing"))
    if policy.max_running is not None:
        rules.append(f"at most {policy.max_running} jobs run at once")
    if policy.backends is not None:
        rules.append("jobs run only on the backends " + (", ".join(policy.backends) or "none"))
    if policy.slurm_partitions is not None:
        rules.append("Slurm jobs run only on the partitions " + (", ".join(policy.slurm_partitions) or "none"))
    if not rules:
        return "server_info shows this server's limits and policy (none set)."
    return "This server's policy: " + "; ".join(rules) + ". Refusals are policy_denied; server_info shows the rules."


class AgentJobsServer(MCPServer):
    """The SDK's server, with a stdio transport served by the event loop that answers the lines the SDK cannot read."""

    async def run_stdio_async(self) -> None:
        async with stdio_streams() as (read_stream, write_stream):
            await self._lowlevel_server.run(
                AnsweringReader(read_stream, write_stream),
                write_stream,
                self._lowlevel_server.create_initialization_options(),
            )


def build_server(cfg: Config, *, jobs: AsyncJobs | None = None, base_url: str | None = None) -> MCPServer:
    """The MCPServer with the job tools and server_info; with a token, bearer auth on every HTTP route."""
    jobs = jobs or AsyncJobs(cfg.root, policy=cfg.policy, backend=cfg.backend)
    log.info("job store: %s", jobs.root)
    auth: dict[str, Any] = {}
    if cfg.token is not None:
        auth = {
            "token_verifier": access.StaticTokenVerifier(cfg.token),
            "auth": access.auth_settings(base_url or f"http://{cfg.host}:{cfg.port}"),
        }
    waits = WaitPolicy(cfg.default_wait_s, cfg.max_wait_s)
    return AgentJobsServer(
        "agent-jobs",
        title="agent-jobs",
        version=server_version(),
        instructions=INSTRUCTIONS + "\n" + policy_summary(cfg.policy),
        tools=[*build_tools(jobs, waits, cfg.policy), build_info_tool(jobs.root, cfg.policy, waits, jobs.backend)],
        log_level=cfg.log_level.upper(),  # type: ignore[arg-type]
        **auth,
    )


async def serve_stdio(cfg: Config, jobs: AsyncJobs | None = None) -> None:
    """Serve one client on stdin/stdout until stdin closes."""
    await build_server(cfg, jobs=jobs).run_stdio_async()


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


def url_host(host: str) -> str:
    """How a URL names the bound address; a wildcard bind (0.0.0.0, ::) is reached locally on loopback."""
    host = host.strip("[]")
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"[{host}]" if ":" in host else host


class HttpService:
    """SSE (``/sse`` + ``/messages/``) and/or streamable HTTP (``/mcp``), and the web page, on one listening socket.

    The socket is bound and listening when the object is made, so clients may connect at once;
    :meth:`serve` answers them until :meth:`stop`.
    """

    def __init__(self, cfg: Config, sock: socket.socket | None = None, *, jobs: AsyncJobs | None = None) -> None:
        self.cfg = cfg
        self.sock = sock or bind(cfg.host, cfg.port)
        self.port: int = self.sock.getsockname()[1]
        self.base_url = f"http://{url_host(cfg.host)}:{self.port}"
        jobs = jobs or AsyncJobs(cfg.root, policy=cfg.policy)
        self.mcp = build_server(cfg, jobs=jobs, base_url=self.base_url)
        # The page for people, at / beside the MCP routes, on the same store, policy and token.
        # Imported here: Jinja2 and the page's routes cost a stdio server's start ~50 ms for nothing.
        from . import web

        self._web = web
        self.web = web.build_web(cfg, jobs, self.port)
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

    def token_hint(self) -> list[str]:
        """Where the token is and a client line to paste (nothing when it came from the environment)."""
        if self.cfg.token is None:
            return ["serving without a token (--no-auth): any local user may run commands as this user"]
        if self.cfg.token_file is None:
            return []
        path = self.cfg.token_file
        urls = self.urls
        kind, url = ("http", urls["streamable-http"]) if "streamable-http" in urls else ("sse", urls["sse"])
        return [
            f"the bearer token is in {path}",
            f"connect with: claude mcp add --transport {kind} agent-jobs {url} "
            f'--header "Authorization: Bearer $(cat {shlex.quote(path)})"',
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 0

        async def tracking_send(message: Any) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = message.get("status", 0)
            await send(message)

        path = scope.get("path", "")
        if self._web.is_web_path(path):
            # The page checks its own cookie or bearer header; the MCP routes keep the SDK's bearer check.
            await self.web(scope, receive, send)
            return
        try:
            if self._http is not None and (self._sse is None or path.rstrip("/") == HTTP_PATH):
                await self._http(scope, receive, tracking_send)
            else:
                assert self._sse is not None
                await self._sse(scope, receive, tracking_send)  # type: ignore[misc]
        except ValueError as exc:
            # The SDK's SSE endpoint raises after sending its 421/403: a refusal, not a crash.
            if not (status and str(exc) == "Request validation failed"):
                raise
        if 400 <= status < 500:
            # One line per refused request (bad token, Host or Origin, unreadable body), whatever the SDK logs.
            log.warning("refused %s %s: HTTP %d", scope.get("method"), path, status)

    async def serve(self) -> None:
        async with AsyncExitStack() as stack:
            if self._http is not None:
                await stack.enter_async_context(self.mcp.session_manager.run())
            for name, url in self.urls.items():
                # Always on stderr, whatever the log level: with --port 0 it is how a client learns the port.
                print(f"agent-jobs: serving {name} at {url}", file=sys.stderr, flush=True)
            sign_in = self._web.sign_in_line(self.base_url, self.cfg, sys.stderr)
            print(f"agent-jobs: {sign_in}", file=sys.stderr, flush=True)
            for line in self.token_hint():
                print(f"agent-jobs: {line}", file=sys.stderr, flush=True)
            await self._uvicorn.serve(sockets=[self.sock])

    def stop(self) -> None:
        """Ask :meth:`serve` to return (also before it has started)."""
        self._uvicorn.should_exit = True
