"""The server's settings, from the command line and the environment, checked once at start.

Nothing here imports the MCP SDK, so a bad flag or variable is reported in milliseconds.
Every refusal is a :class:`ConfigError` whose message names the flag or variable at fault.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from jobcore import Policy

from . import tokens

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
ENV_BACKEND = "AGENT_JOBS_BACKEND"
BACKENDS = ("local", "slurm")


class ConfigError(Exception):
    """A setting the server cannot start with; the message names it."""


@dataclass(frozen=True)
class Config:
    """Every setting the server runs with, from flags, the environment and the policy file."""

    transports: tuple[str, ...] = ("stdio",)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    root: str | None = None
    token: str | None = None
    #: The file the token was read from (``--token-file``, or the one the server made), for the client line it logs.
    token_file: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    log_level: str = "info"
    #: ``AGENT_JOBS_DEFAULT_WAIT_SECONDS``; None keeps each tool's own default.
    default_wait_s: float | None = None
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    policy: Policy = field(default_factory=Policy)
    #: Where a job runs when it does not say (``--backend``, ``AGENT_JOBS_BACKEND``).
    backend: str = "local"

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
    from jobcore import JobError, retention_seconds  # the engine, not the SDK: cheap enough here

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


def _token(env: Mapping[str, str], args: argparse.Namespace, http: bool) -> tuple[str | None, str | None]:
    """``(token, file)``: from ``--token-file``, else ``AGENT_JOBS_TOKEN``, else for HTTP the stored one.

    SSE and HTTP always require a token unless ``--no-auth`` is given, and only on loopback.
    """
    if args.no_auth:
        if args.token_file is not None:
            raise ConfigError("--no-auth and --token-file contradict each other: give one")
        if env.get(ENV_TOKEN, "").strip():
            raise ConfigError(f"--no-auth: {ENV_TOKEN} is set too; unset it or drop --no-auth")
        if http and not is_loopback(args.host):
            raise ConfigError(
                f"--no-auth: refusing to serve {args.host}, which is not a loopback address, without a token"
            )
        return None, None
    if args.token_file is not None:
        try:
            with open(args.token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {args.token_file}: {exc.strerror or exc}") from None
        if not token:
            raise ConfigError(f"--token-file {args.token_file}: the file is empty")
        return token, args.token_file
    token = env.get(ENV_TOKEN, "").strip()
    if token or not http:
        return token or None, None
    path = tokens.default_path(env)
    try:
        return tokens.stored_token(path), str(path)
    except tokens.TokenFileError as exc:
        raise ConfigError(str(exc)) from None


#: The policy flags that take a list, and the Policy field each one replaces.
POLICY_LIST_FLAGS = {
    "--allow-root": "allowed_roots",
    "--allow-command": "allow_commands",
    "--deny-command": "deny_commands",
    "--pass-env": "pass_env",
}


def _folder(value: str) -> str:
    """An ``--allow-root`` folder as the policy shows it: absolute, from the server's working directory."""
    return os.path.abspath(os.path.expanduser(value))


def _policy(args: argparse.Namespace) -> Policy:
    """``--policy FILE``, then each policy flag given replaces that field of the file's."""
    policy = Policy()
    if args.policy is not None:
        try:
            policy = Policy.load(args.policy)
        except ValueError as exc:
            raise ConfigError(f"--policy {exc}") from None
    overrides: dict[str, object] = {}
    for flag, name in POLICY_LIST_FLAGS.items():
        values: list[str] = getattr(args, flag[2:].replace("-", "_"))
        for value in values:
            if not value.strip():
                raise ConfigError(f"{flag}: empty value")
        if values:
            overrides[name] = [_folder(v) for v in values] if flag == "--allow-root" else list(values)
    if args.read_only:
        overrides["read_only"] = True
    if args.max_running is not None:
        if args.max_running < 1:
            raise ConfigError(f"--max-running {args.max_running}: give a number of jobs >= 1")
        overrides["max_running"] = args.max_running
    try:
        return policy.merged(**overrides)
    except ValidationError as exc:  # a flag's value that the Policy model refuses
        error = exc.errors(include_url=False)[0]
        field_name = str(error["loc"][0]) if error["loc"] else "policy"
        flag = {v: k for k, v in POLICY_LIST_FLAGS.items()}.get(field_name, f"--{field_name.replace('_', '-')}")
        raise ConfigError(f"{flag}: {error['msg']}") from None


def parser() -> argparse.ArgumentParser:
    """The ``agent-jobs`` command line."""
    return parsers()[0]


#: Adds subcommands beside ``serve`` and returns their parsers by name (the people's commands of ``cli``).
MoreCommands = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], dict[str, argparse.ArgumentParser]]


def parsers(
    version: str = "", more: MoreCommands | None = None
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``agent-jobs`` parser and each subcommand's own, which reports that subcommand's errors."""
    p = argparse.ArgumentParser(
        prog="agent-jobs",
        description="An MCP server that gives LLM agents durable background jobs.",
    )
    if version:
        p.add_argument("--version", action="version", version=f"agent-jobs {version}")
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
    _add_common_flags(serve)
    web = sub.add_parser(
        "web",
        help="serve only the web page of jobs (for agents that use stdio)",
        description="Serve the web page of jobs alone: see, follow and stop jobs from a browser. "
        "Same store, policy and token as serve; prints a sign-in link on stderr.",
    )
    _add_common_flags(web)
    return p, {"serve": serve, "web": web, **(more(sub) if more else {})}


def _add_common_flags(command: argparse.ArgumentParser) -> None:
    """The flags ``serve`` and ``web`` share: address, token, store, Host and Origin lists, logging, policy."""
    command.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind for sse/http (default {DEFAULT_HOST})")
    command.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port for sse/http (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    command.add_argument("--root", help=f"job store folder (default ${ENV_ROOT}, else the XDG data folder)")
    command.add_argument("--token-file", help=f"file holding the bearer token (instead of ${ENV_TOKEN})")
    command.add_argument(
        "--no-auth",
        action="store_true",
        help="serve sse/http without a token (loopback only); by default a token is required, made if none is given",
    )
    command.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="also accept this Host header (name:port or name:*); repeatable",
    )
    command.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="accept requests carrying this Origin (e.g. http://localhost:5173, or with :* for any port); repeatable",
    )
    command.add_argument(
        "--backend",
        choices=BACKENDS,
        help=f"where a job runs when it does not say (default ${ENV_BACKEND}, else local); see docs/slurm.md",
    )
    command.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="stderr log level (default info)")
    rules = command.add_argument_group("policy", "what jobs may do; each flag replaces that field of --policy's file")
    rules.add_argument("--policy", metavar="FILE", help="the policy: a TOML (.toml) or JSON file")
    rules.add_argument(
        "--allow-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a job's cwd and paths must be under one of these folders; repeatable",
    )
    rules.add_argument(
        "--allow-command",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only commands matching one of these globs run; repeatable",
    )
    rules.add_argument(
        "--deny-command", action="append", default=[], metavar="PATTERN", help="refuse commands matching; repeatable"
    )
    rules.add_argument(
        "--pass-env",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only the server's variables matching these globs reach jobs; repeatable",
    )
    rules.add_argument(
        "--read-only", action="store_true", help="serve only snapshot, search_output, wait, list_jobs and server_info"
    )
    rules.add_argument("--max-running", type=int, metavar="N", help="at most N jobs running at once")


def load(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """Check the parsed ``serve`` flags and the environment together; raise :class:`ConfigError`."""
    env = os.environ if env is None else env
    web_only = getattr(args, "command", None) == "web"
    transports = () if web_only else _transports(args.transport)
    default_wait, max_wait = wait_settings(env)
    _check_retention(env)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: not a TCP port")
    http = web_only or any(t != "stdio" for t in transports)
    policy = _policy(args)
    for entry in args.allowed_host:
        name, _, port = entry.rpartition(":")
        if not name or not (port == "*" or port.isdigit()):
            raise ConfigError(f"--allowed-host {entry!r}: give name:port or name:*")
    backend = args.backend or env.get(ENV_BACKEND) or "local"
    if backend not in BACKENDS:
        raise ConfigError(f"{ENV_BACKEND}={backend!r}: give one of {', '.join(BACKENDS)}")
    token, token_file = _token(env, args, http)  # last: it may create the token file
    return Config(
        transports=transports,
        host=args.host,
        port=args.port,
        root=args.root,
        token=token,
        token_file=token_file,
        allowed_hosts=tuple(args.allowed_host),
        allowed_origins=tuple(o.rstrip("/") for o in args.allowed_origin),
        log_level=args.log_level,
        default_wait_s=default_wait,
        max_wait_s=max_wait,
        policy=policy,
        backend=backend,
    )


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None, command: str = "serve") -> Config:
    """``serve`` (or ``web``) flags, without the subcommand, to a checked :class:`Config`; for tests and embedding."""
    return load(parser().parse_args([command, *argv]), env)
