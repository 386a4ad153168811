"""``agent-jobs web``: the page alone, for people whose agents talk to the server over stdio."""

from __future__ import annotations

import socket
import sys

from jobcore import AsyncJobs

from ..config import Config
from . import build_web, sign_in_line


class WebService:
    """The web page on one listening socket (bound when made, so ``--port 0`` has its port at once)."""

    def __init__(self, cfg: Config, jobs: AsyncJobs, sock: socket.socket | None = None) -> None:
        import uvicorn

        from ..app import bind, url_host

        self.cfg = cfg
        self.sock = sock or bind(cfg.host, cfg.port)
        self.port: int = self.sock.getsockname()[1]
        self.base_url = f"http://{url_host(cfg.host)}:{self.port}"
        self.web = build_web(cfg, jobs, self.port)
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(
                self.web,
                lifespan="off",
                log_config=None,
                log_level=cfg.log_level,
                access_log=cfg.log_level == "debug",
                timeout_graceful_shutdown=2,
            )
        )

    async def serve(self) -> None:
        print(f"agent-jobs: {sign_in_line(self.base_url, self.cfg, sys.stderr)}", file=sys.stderr, flush=True)
        await self._uvicorn.serve(sockets=[self.sock])

    def stop(self) -> None:
        self._uvicorn.should_exit = True
