"""The web page of jobs, for the people who supervise agents: see what runs, read logs, stop a job.

Served beside the MCP endpoints by ``agent-jobs serve`` on HTTP, and alone by ``agent-jobs web``
(for agents on stdio). Same store, same policy, same token: see ``docs/web.md``.
"""

from __future__ import annotations

from urllib.parse import quote

from jobcore import AsyncJobs

from ..access import allowed_hosts, allowed_origins
from ..config import Config
from .routes import WebApp, is_web_path

__all__ = ["WebApp", "build_web", "is_web_path", "sign_in_link"]


def build_web(cfg: Config, jobs: AsyncJobs, port: int) -> WebApp:
    """The page's application for a server listening on ``port``, with its Host and Origin lists."""
    from .session import Gate

    hosts = allowed_hosts(cfg, port)
    return WebApp(jobs, cfg.policy, Gate(cfg.token, hosts, allowed_origins(cfg, hosts)))


def sign_in_link(base_url: str, token: str | None) -> str:
    """The page's address, with the token for a first visit (as Jupyter prints it)."""
    return f"{base_url}/" if token is None else f"{base_url}/?token={quote(token, safe='')}"
