"""The web page of jobs, for the people who supervise agents: see what runs, read logs, stop a job.

Served beside the MCP endpoints by ``agent-jobs serve`` on HTTP, and alone by ``agent-jobs web``
(for agents on stdio). Same store, same policy, same token: see ``docs/web.md``.
"""

from __future__ import annotations

from typing import TextIO
from urllib.parse import quote

from jobcore import AsyncJobs

from ..access import allowed_hosts, allowed_origins
from ..config import Config
from .routes import WebApp, is_web_path

__all__ = ["WebApp", "build_web", "is_web_path", "sign_in_line"]


def build_web(cfg: Config, jobs: AsyncJobs, port: int) -> WebApp:
    """The page's application for a server listening on ``port``, with its Host and Origin lists."""
    from .session import Gate

    hosts = allowed_hosts(cfg, port)
    return WebApp(jobs, cfg.policy, Gate(cfg.token, hosts, allowed_origins(cfg, hosts)))


def sign_in_line(base_url: str, cfg: Config, stream: TextIO) -> str:
    """Where the page is, said at start; with the token in the link (as Jupyter does) only on a terminal.

    Logs kept in files (a service's stderr) never hold the token: there, the line says where it is.
    """
    if cfg.token is None:
        return f"web page at {base_url}/ (no sign-in: --no-auth)"
    if stream.isatty():
        return f"web page at {base_url}/?token={quote(cfg.token, safe='')}"
    where = f"the token in {cfg.token_file}" if cfg.token_file else "the token (AGENT_JOBS_TOKEN)"
    return f"web page at {base_url}/ (sign in with {where})"
