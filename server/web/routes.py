"""The web page's routes: pages, a JSON API, live streams, and the two actions (kill, restart).

Every read and every action goes through the engine (:class:`jobcore.AsyncJobs`) with the
server's policy, so the page can do nothing an MCP client of the same server could not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobcore import AsyncJobs, ErrorInfo, ErrorPayload, JobError, Policy

from . import live, present
from .session import COOKIE, COOKIE_MAX_AGE_S, Gate

HERE = Path(__file__).resolve().parent
#: The job page's first view of each log: its last lines, then it follows live.
TAIL_LINES = 200
PAGE_BYTES = 65536
STREAMS = ("stdout", "stderr", "full")
STATES = ("created", "queued", "running", "exited", "killed", "failed")
SIGNALS = ("SIGTERM", "SIGINT", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
#: Paths the web page answers; everything else belongs to the MCP transports.
PREFIXES = ("/jobs/", "/api/", "/events", "/static/")
EXACT = ("/", "/login", "/logout")


def is_web_path(path: str) -> bool:
    return path in EXACT or path.startswith(PREFIXES)


def _error(code: str, message: str, status: int, **details: Any) -> JSONResponse:
    payload = ErrorPayload(error=ErrorInfo(code=code, message=message, details=details or None))
    return JSONResponse(payload.to_dict(), status_code=status)


#: The HTTP status of an engine refusal; anything else is a bad request.
STATUS_OF = {"job_not_found": 404, "ambiguous_job_id": 409, "policy_denied": 403}


def _refusal(exc: JobError) -> JSONResponse:
    info = ErrorInfo(code=exc.code, message=exc.message, retryable=exc.retryable, details=exc.details)
    return JSONResponse(ErrorPayload(error=info).to_dict(), status_code=STATUS_OF.get(exc.code, 400))


class WebApp:
    """The Starlette application of the page, bound to one store, policy and token."""

    def __init__(self, jobs: AsyncJobs, policy: Policy, gate: Gate, *, secure_cookie: bool = False) -> None:
        self.jobs = jobs
        self.policy = policy
        self.gate = gate
        self.secure_cookie = secure_cookie
        self.watcher = live.StoreWatcher(jobs.root)
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True)
        )
        self.templates.globals.update(
            short_id=present.short_id,
            command_text=present.command_text,
            duration_text=present.duration_text,
            time_text=present.time_text,
            end_text=present.end_text,
            read_only=policy.read_only,
            states=STATES,
            signals=SIGNALS,
            auth=gate.token is not None,
        )
        self.app = Starlette(
            routes=[
                Route("/", self.jobs_page),
                Route("/login", self.login_page, methods=["GET"]),
                Route("/login", self.login, methods=["POST"]),
                Route("/logout", self.logout, methods=["POST"]),
                Route("/jobs/{job_id}", self.job_page),
                Route("/jobs/{job_id}/log/{stream}", self.download),
                Route("/api/jobs", self.api_jobs),
                Route("/api/rows", self.api_rows),
                Route("/api/jobs/{job_id}", self.api_job),
                Route("/api/jobs/{job_id}/log/{stream}", self.api_log),
                Route("/api/jobs/{job_id}/kill", self.kill, methods=["POST"]),
                Route("/api/jobs/{job_id}/restart", self.restart, methods=["POST"]),
                Route("/events", self.list_events),
                Route("/events/{job_id}", self.job_events),
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        if not self.gate.host_allowed(request):
            await PlainTextResponse("Invalid Host header", status_code=421)(scope, receive, send)
            return
        path = scope.get("path", "")
        token = request.query_params.get("token")
        if path == "/" and token is not None and self.gate.token_matches(token):
            # The sign-in link: set the cookie and drop the token from the address bar and history.
            await self._signed_in(RedirectResponse("/", status_code=303))(scope, receive, send)
            return
        open_paths = path in ("/login",) or path.startswith("/static/")
        if not open_paths and not self.gate.signed_in(request):
            await self._sign_in_needed(request)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _sign_in_needed(self, request: Request) -> Response:
        path = request.url.path
        if path.startswith(("/api/", "/events")) or request.method != "GET":
            return _error("unauthorized", "sign in first: the session cookie or the bearer token is missing", 401)
        return RedirectResponse("/login?" + urlencode({"next": _local(path)}), status_code=303)

    def _signed_in(self, response: Response) -> Response:
        assert self.gate.session is not None
        response.set_cookie(
            COOKIE,
            self.gate.session,
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=self.secure_cookie,
            path="/",
        )
        return response

    def _render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    # Sign-in

    async def login_page(self, request: Request) -> Response:
        if self.gate.token is None:
            return RedirectResponse("/", status_code=303)
        return self._render("login.html", next=_local(request.query_params.get("next", "/")), failed=False)

    async def login(self, request: Request) -> Response:
        if not self.gate.origin_allowed(request):
            return _error("forbidden_origin", "this request did not come from this server's page", 403)
        form = await request.form()
        token = str(form.get("token", "")).strip()
        target = _local(str(form.get("next", "/")))
        if not self.gate.token_matches(token):
            return self._render("login.html", status=401, next=target, failed=True)
        return self._signed_in(RedirectResponse(target, status_code=303))

    async def logout(self, request: Request) -> Response:
        if not self.gate.origin_allowed(request):
            return _error("forbidden_origin", "this request did not come from this server's page", 403)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # The jobs page

    def _filters(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        return {
            "state": q.get("state", "") if q.get("state", "") in STATES else "",
            "tag": q.get("tag", "").strip(),
            "text": q.get("q", "").strip(),
            "all": q.get("scope", "all") != "here",
        }

    async def _rows(self, filters: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        args: dict[str, Any] = {"all": filters["all"], "limit": 0}
        if filters["state"]:
            args["state"] = filters["state"]
        if filters["tag"]:
            args["tags"] = [filters["tag"]]
        listing = (await self.jobs.list(**args)).to_dict()
        rows = [e for e in listing["jobs"] if present.matches_text(e, filters["text"])]
        for row in rows:
            row["duration_ms"] = present.duration_ms(row.get("started_at"), row.get("finished_at"))
        listing["jobs"] = rows
        return rows, listing

    async def jobs_page(self, request: Request) -> Response:
        filters = self._filters(request)
        try:
            rows, listing = await self._rows(filters)
        except JobError as exc:
            rows, listing = [], {"root": self.jobs.root, "error": exc.message}
        return self._render("jobs.html", rows=rows, filters=filters, root=listing["root"], error=listing.get("error"))

    async def api_rows(self, request: Request) -> Response:
        """The table's rows as HTML, for the live jobs page."""
        try:
            rows, _ = await self._rows(self._filters(request))
        except JobError as exc:
            return _refusal(exc)
        return self._render("_rows.html", rows=rows)

    async def api_jobs(self, request: Request) -> Response:
        try:
            _, listing = await self._rows(self._filters(request))
        except JobError as exc:
            return _refusal(exc)
        return JSONResponse(listing)

    # One job

    async def _job(self, job_id: str) -> dict[str, Any]:
        snap = await self.jobs.snapshot(job_id=job_id, tail_lines=TAIL_LINES, max_bytes=PAGE_BYTES)
        meta = self.jobs.store.open(snap.job_id).read_meta()
        definition = {
            "command": meta.get("command"),
            "cwd": meta.get("cwd"),
            "tags": meta.get("tags", []),
            "timeout_ms": meta.get("timeout_ms", 0),
            "kill_after_ms": meta.get("kill_after_ms"),
            "env": [{"key": k, "value": v} for k, v in present.env_rows(meta)],
            "inherit_env": meta.get("inherit_env", True),
            "env_files": meta.get("env_files", []),
            "has_stdin": bool(meta.get("stdin_file")),
            "notification": meta.get("notification"),
        }
        payload = snap.to_dict()
        payload["definition"] = definition
        payload["duration_ms"] = payload.get("duration_ms") or present.duration_ms(
            payload.get("started_at"), payload.get("finished_at")
        )
        return payload

    async def job_page(self, request: Request) -> Response:
        try:
            job = await self._job(request.path_params["job_id"])
        except JobError as exc:
            return self._render("missing.html", status=STATUS_OF.get(exc.code, 400), message=exc.message)
        return self._render("job.html", job=job)

    async def api_job(self, request: Request) -> Response:
        try:
            return JSONResponse(await self._job(request.path_params["job_id"]))
        except JobError as exc:
            return _refusal(exc)

    async def api_log(self, request: Request) -> Response:
        """A window of one log from ``offset``, at most ``max_bytes``: the page's "load earlier"."""
        stream = request.path_params["stream"]
        if stream not in ("stdout", "stderr"):
            return _error("invalid_input", f"stream: one of stdout, stderr (got {stream!r})", 400, field="stream")
        try:
            offset = int(request.query_params.get("offset", "0"))
            max_bytes = int(request.query_params.get("max_bytes", str(PAGE_BYTES)))
        except ValueError:
            return _error("invalid_input", "offset and max_bytes: whole numbers of bytes", 400, field="offset")
        try:
            snap = await self.jobs.snapshot(
                job_id=request.path_params["job_id"],
                tail_lines=0,
                max_bytes=max_bytes,
                **{f"{stream}_offset": offset},
            )
        except JobError as exc:
            return _refusal(exc)
        window = snap.snapshot
        begin, end = getattr(window, f"{stream}_range")
        text = getattr(window, f"{stream}_tail")
        return JSONResponse({"job_id": snap.job_id, "stream": stream, "begin": begin, "end": end, "text": text})

    async def download(self, request: Request) -> Response:
        stream = request.path_params["stream"]
        if stream not in STREAMS:
            return PlainTextResponse(f"no log {stream!r}: one of {', '.join(STREAMS)}", status_code=404)
        try:
            snap = await self.jobs.snapshot(job_id=request.path_params["job_id"], tail_lines=0, max_bytes=0)
        except JobError as exc:
            return PlainTextResponse(exc.message, status_code=STATUS_OF.get(exc.code, 400))
        path = getattr(snap, f"{stream}_log_path")
        if not os.path.isfile(path):
            return PlainTextResponse(f"{stream}.log is not there", status_code=404)
        return FileResponse(path, media_type="text/plain; charset=utf-8", filename=f"{snap.job_id[:8]}-{stream}.log")

    # Actions

    async def _act(self, request: Request, run: Any) -> Response:
        if not self.gate.origin_allowed(request):
            return _error("forbidden_origin", "this request did not come from this server's page", 403)
        try:
            payload = await run(await request.form())
        except JobError as exc:
            return _refusal(exc)
        return JSONResponse(payload.to_dict())

    async def kill(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]

        async def run(form: Any) -> Any:
            return await self.jobs.kill(job_id=job_id, signal=str(form.get("signal", "SIGTERM")), wait_seconds=5)

        return await self._act(request, run)

    async def restart(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]

        async def run(_form: Any) -> Any:
            return await self.jobs.restart(job_id=job_id, wait_seconds=0, tail_lines=0, max_bytes=0)

        return await self._act(request, run)

    # Live streams

    async def list_events(self, _request: Request) -> Response:
        return StreamingResponse(self.watcher.stream(), media_type="text/event-stream", headers=STREAM_HEADERS)

    async def job_events(self, request: Request) -> Response:
        q = request.query_params
        try:
            offsets = (max(0, int(q.get("stdout", "0"))), max(0, int(q.get("stderr", "0"))))
        except ValueError:
            return _error("invalid_input", "stdout and stderr: byte offsets", 400, field="stdout")
        stream = live.job_stream(self.jobs, request.path_params["job_id"], offsets)
        return StreamingResponse(stream, media_type="text/event-stream", headers=STREAM_HEADERS)


#: No framing by other sites, no sniffing, scripts only from this server.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make form posts send Origin: null
    "Cache-Control": "no-store",
}
STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _local(target: str) -> str:
    """A redirect target on this server only: a path, never ``//elsewhere`` or a full URL."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
