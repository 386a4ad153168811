"""``agent-jobs serve``: the MCP server's start, called by :mod:`cli.main`, which runs the other commands.

Logs go to stderr; stdout is the protocol's (stdio) or unused.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from types import FrameType

from jobcore import SERVER_SECRETS, AsyncJobs, JobError

from .config import Config, ConfigError, load, parsers

log = logging.getLogger("agent_jobs")


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level != "debug":
        # The SDK and uvicorn narrate every request at INFO; their warnings and errors still show.
        for name in ("mcp", "uvicorn.error", "sse_starlette", "httpx2"):
            logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


TERMINAL_NOTICE = (
    "agent-jobs: this is an MCP server, waiting for an MCP client to talk to it on stdin/stdout;"
    " add it to a client instead (e.g. `claude mcp add agent-jobs -- agent-jobs serve`, see the README);"
    " Ctrl-C stops it."
)


def _version() -> str:
    try:
        return version("agent-jobs")
    except PackageNotFoundError:
        return "(not installed)"


def _exit_now(signum: int, _frame: FrameType | None) -> None:
    """Leave at once: the stdio reader blocks in a thread that no cancellation reaches, and jobs run detached."""
    os._exit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    p, commands = parsers(_version())
    args, extra = p.parse_known_args(argv)
    if args.command is None:
        p.print_usage(sys.stderr)
        print("agent-jobs: error: give a command, e.g. `agent-jobs serve`", file=sys.stderr)
        return 2
    if extra:
        commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")  # exits 2
    try:
        cfg = load(args)
    except ConfigError as exc:
        print(f"agent-jobs: error: {exc}", file=sys.stderr)
        return 2
    # Read once; nothing this process starts (supervisors, jobs, notify commands) may inherit them.
    for name in SERVER_SECRETS:
        os.environ.pop(name, None)
    jobs = AsyncJobs(cfg.root, policy=cfg.policy, backend=cfg.backend)
    try:
        jobs.prepare()
    except JobError as exc:
        print(f"agent-jobs: error: {exc.message}", file=sys.stderr)
        return 2
    _setup_logging(cfg.log_level)
    log.info("policy: %s", json.dumps(cfg.policy.describe(), sort_keys=True))

    import anyio

    from . import app

    try:
        if args.command == "web":
            return _serve_web(cfg, jobs)
        if cfg.transports == ("stdio",):
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, _exit_now)
            if sys.stdin.isatty():
                print(TERMINAL_NOTICE, file=sys.stderr, flush=True)
            anyio.run(app.serve_stdio, cfg, jobs)
        else:
            try:
                service = app.HttpService(cfg, jobs=jobs)
            except OSError as exc:
                reason = exc.strerror or exc
                print(f"agent-jobs: error: cannot listen on {cfg.host}:{cfg.port}: {reason}", file=sys.stderr)
                return 1
            anyio.run(service.serve)
    except KeyboardInterrupt:
        pass
    return 0


def _serve_web(cfg: Config, jobs: AsyncJobs) -> int:
    """``agent-jobs web``: the page alone, on its own port."""
    import anyio

    from .web.service import WebService

    try:
        service = WebService(cfg, jobs)
    except OSError as exc:
        print(f"agent-jobs: error: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    anyio.run(service.serve)
    return 0
