"""The server's settings, from the command line and the environment, checked once at start.

Nothing here imports the MCP SDK, so a bad flag or variable is reported in milliseconds.
Every refusal is a :class:`ConfigError` whose message names the flag or variable at fault.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TRANSPORTS = ("stdio", "sse", "streamable-http")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8811
DEFAULT_MAX_WAIT_S = 55.0

ENV_ROOT = "AGENT_JOBS_ROOT"
ENV_TOKEN = "AGENT_JOBS_TOKEN"
ENV_DEFAULT_WAIT = "AGENT_JOBS_DEFAULT_WAIT_SECONDS"
ENV_MAX_WAIT = "AGENT_JOBS_MAX_WAIT_SECONDS"
ENV_RETENTION = "AGENT_JOBS_RETENTION"


class ConfigError(Exception):
    """A setting the server cannot start with; the message names it."""


@dataclass(frozen=True)
class Config:
    transports: tuple[str, ...] = ("stdio",)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    root: str | None = None
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    log_level: str = "info"
    #: ``AGENT_JOBS_DEFAULT_WAIT_SECONDS``; None keeps each tool's own default.
    default_wait_s: float | None = None
    max_wait_s: float = DEFAULT_MAX_WAIT_S

    @property
    def http_transports(self) -> tuple[str, ...]:
        return tuple(t for t in self.transports if t != "stdio")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; any other name counts as reachable from outside."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _seconds(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}={raw!r} must be a finite number of seconds >= 0")
    return value


def wait_settings(env: Mapping[str, str]) -> tuple[float | None, float]:
    """``(default, cap)`` from ``AGENT_JOBS_DEFAULT_WAIT_SECONDS`` and ``AGENT_JOBS_MAX_WAIT_SECONDS``."""
    default = _seconds(env, ENV_DEFAULT_WAIT)
    cap = _seconds(env, ENV_MAX_WAIT)
    cap = DEFAULT_MAX_WAIT_S if cap is None else cap
    if default is not None and default > cap:
        raise ConfigError(f"{ENV_DEFAULT_WAIT}={default:g} is above the cap {ENV_MAX_WAIT}={cap:g}")
    return default, cap


def _check_retention(env: Mapping[str, str]) -> None:
    """A bad ``AGENT_JOBS_RETENTION`` would only show as a warning at every launch: refuse it now."""
    from jobcore import JobError  # the engine, not the SDK: cheap enough here
    from jobcore.retention import retention_seconds

    raw = env.get(ENV_RETENTION)
    if not raw:
        return
    try:
        retention_seconds(raw)
    except JobError:
        raise ConfigError(f"{ENV_RETENTION}={raw!r} is not an age such as 30d, 12h, 45m or 90s, nor off") from None


def _transports(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not names:
        raise ConfigError("--transport: empty")
    for name in names:
        if name not in TRANSPORTS:
            raise ConfigError(f"--transport: unknown transport {name!r}; one of {', '.join(TRANSPORTS)}")
    if "stdio" in names and len(names) > 1:
        raise ConfigError("--transport: stdio cannot be combined with sse or streamable-http")
    return names


def _token(env: Mapping[str, str], token_file: str | None) -> str | None:
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {token_file}: {exc.strerror or exc}") from None
        if not token:
            raise ConfigError(f"--token-file {token_file}: the file is empty")
        return token
    token = env.get(ENV_TOKEN, "").strip()
    return token or None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agent-jobs",
        description="An MCP server that gives LLM agents durable background jobs.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="serve the job tools over MCP (stdio by default)",
        description="Serve the job tools over MCP. Logs go to stderr; over stdio, stdout carries protocol frames only.",
    )
    serve.add_argument(
        "--transport",
        default="stdio",
        help="stdio (default), sse, streamable-http, or sse,streamable-http for both on one port",
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind for sse/http (default {DEFAULT_HOST})")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port for sse/http (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    serve.add_argument("--root", help=f"job store folder (default ${ENV_ROOT}, else the XDG data folder)")
    serve.add_argument("--token-file", help=f"file holding the bearer token (instead of ${ENV_TOKEN})")
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="also accept this Host header (name:port or name:*); repeatable",
    )
    serve.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="accept requests carrying this Origin (e.g. http://localhost:5173, or with :* for any port); repeatable",
    )
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="stderr log level (default info)")
    return p


def load(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """Check the parsed ``serve`` flags and the environment together; raise :class:`ConfigError`."""
    env = os.environ if env is None else env
    transports = _transports(args.transport)
    default_wait, max_wait = wait_settings(env)
    _check_retention(env)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: not a TCP port")
    token = _token(env, args.token_file)
    http = any(t != "stdio" for t in transports)
    if http and not is_loopback(args.host) and token is None:
        raise ConfigError(
            f"refusing to listen on {args.host}, which is not a loopback address, without a token: "
            f"set {ENV_TOKEN} or pass --token-file"
        )
    for entry in args.allowed_host:
        name, _, port = entry.rpartition(":")
        if not name or not (port == "*" or port.isdigit()):
            raise ConfigError(f"--allowed-host {entry!r}: give name:port or name:*")
    return Config(
        transports=transports,
        host=args.host,
        port=args.port,
        root=args.root,
        token=token,
        allowed_hosts=tuple(args.allowed_host),
        allowed_origins=tuple(o.rstrip("/") for o in args.allowed_origin),
        log_level=args.log_level,
        default_wait_s=default_wait,
        max_wait_s=max_wait,
    )


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Config:
    """``serve`` flags (without the subcommand) to a checked :class:`Config`; for tests and embedding."""
    return load(parser().parse_args(["serve", *argv]), env)
