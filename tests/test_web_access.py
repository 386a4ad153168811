"""The web page over plain HTTP: who may see it, who may act, what it shows and what it never shows."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from helpers import Fifo

from jobcore import Jobs
from server.web.routes import SIGNALS, STATES
from server.web.session import COOKIE

TOKEN = "web-access-test-token-0123456789"
ENV = {"AGENT_JOBS_TOKEN": TOKEN}
BEARER = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parent.parent


async def _signed_in(http: httpx2.AsyncClient, base: str) -> None:
    response = await http.get(f"{base}/?token={TOKEN}")
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert COOKIE in http.cookies


def _gated_job(job_root: Path, tmp_path: Path, **extra: Any) -> tuple[Jobs, str, Fifo]:
    """A running job that ends only when the test writes to its gate."""
    jobs = Jobs(job_root)
    gate = Fifo(tmp_path / "gate")
    job = jobs.run(command=f"read x < {gate}", cwd=str(tmp_path), wait_seconds=0, **extra)
    assert job.state == "running"
    return jobs, job.job_id, gate


async def test_without_the_token_pages_send_to_sign_in_and_the_api_answers_401(http_server, job_root, tmp_path):
    jobs = Jobs(job_root)
    job_id = jobs.run(command="true", cwd=str(tmp_path), wait_seconds=10).job_id
    async with http_server("streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=10) as http:
        base = service.base_url
        for page in ("/", f"/jobs/{job_id}", f"/jobs/{job_id}/log/stdout"):
            response = await http.get(base + page)
            assert response.status_code == 303, page
            assert response.headers["location"].startswith("/login?next=")
        for api in ("/api/jobs", f"/api/jobs/{job_id}", "/api/rows", "/events", f"/events/{job_id}"):
            response = await http.get(base + api)
            assert response.status_code == 401, api
            assert response.json()["error"]["code"] == "unauthorized"
        response = await http.post(f"{base}/api/jobs/{job_id}/restart", headers={"Origin": base})
        assert response.status_code == 401
        wrong = await http.get(f"{base}/?token=not-it")
        assert wrong.status_code == 303 and wrong.headers["location"].startswith("/login")
        assert COOKIE not in http.cookies
        assert (await http.get(f"{base}/login")).status_code == 200
    assert jobs.snapshot(job_id=job_id).started_at is not None


async def test_the_token_link_gives_a_strict_httponly_cookie_and_mcp_keeps_its_bearer_check(http_server):
    async with http_server("sse,streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=10) as http:
        base = service.base_url
        response = await http.get(f"{base}/?token={TOKEN}")
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert TOKEN.lower() not in cookie
        assert (await http.get(f"{base}/")).status_code == 200
        assert (await http.get(f"{base}/api/jobs")).json()["type"] == "list"
        # The cookie opens the page only: the MCP endpoints still want the bearer header.
        assert (await http.post(f"{base}/mcp", json={})).status_code == 401
        async with http.stream("GET", f"{base}/sse") as sse:
            assert sse.status_code == 401
    script = httpx2.AsyncClient(timeout=10, headers=BEARER)
    async with script, http_server("streamable-http", env=ENV) as service:
        assert (await script.get(f"{service.base_url}/api/jobs")).status_code == 200


async def test_the_login_form_signs_in_and_stays_on_this_server(http_server):
    async with http_server("streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=10) as http:
        base = service.base_url
        own = {"Origin": base}
        refused = await http.post(f"{base}/login", data={"token": "nope", "next": "/"}, headers=own)
        assert refused.status_code == 401 and COOKIE not in http.cookies
        for target in ("//elsewhere.example/", "https://elsewhere.example/", "/\\elsewhere.example"):
            response = await http.post(f"{base}/login", data={"token": TOKEN, "next": target}, headers=own)
            assert response.status_code == 303 and response.headers["location"] == "/", target
        assert COOKIE in http.cookies
        response = await http.post(f"{base}/logout", headers=own)
        assert response.status_code == 303 and COOKIE not in http.cookies


async def test_a_cross_origin_post_is_refused_and_stops_nothing(http_server, job_root, tmp_path):
    jobs, job_id, gate = _gated_job(job_root, tmp_path)
    async with http_server("streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=30) as http:
        base = service.base_url
        await _signed_in(http, base)
        kill = f"{base}/api/jobs/{job_id}/kill"
        for headers in ({"Origin": "http://elsewhere.example"}, {"Origin": "null"}, {}):
            response = await http.post(kill, data={"signal": "SIGKILL"}, headers=headers)
            assert response.status_code == 403, headers
            assert response.json()["error"]["code"] == "forbidden_origin"
        login = await http.post(f"{base}/login", data={"token": TOKEN}, headers={"Origin": "http://elsewhere.example"})
        assert login.status_code == 403
        assert jobs.snapshot(job_id=job_id).state == "running"
        response = await http.post(kill, data={"signal": "SIGTERM"}, headers={"Origin": base})
        assert response.status_code == 200, response.text
        assert response.json()["type"] == "kill"
    assert jobs.wait(job_id=job_id, wait_seconds=10).state == "killed"
    assert gate.path.exists()  # never opened: the job was stopped, not released


async def test_bad_input_to_an_action_is_a_structured_refusal(http_server, job_root, tmp_path):
    jobs, job_id, gate = _gated_job(job_root, tmp_path)
    async with http_server("streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=30) as http:
        base = service.base_url
        await _signed_in(http, base)
        own = {"Origin": base}
        response = await http.post(f"{base}/api/jobs/{job_id}/kill", data={"signal": "SIGBOGUS"}, headers=own)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_input" and "SIGBOGUS" in error["message"]
        missing = await http.post(f"{base}/api/jobs/{'0' * 32}/kill", headers=own)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
        page = await http.get(f"{base}/api/jobs/{job_id}/log/stdout?offset=x")
        assert page.status_code == 400 and page.json()["error"]["details"]["field"] == "offset"
    assert jobs.snapshot(job_id=job_id).state == "running"
    gate.write()
    assert jobs.wait(job_id=job_id, wait_seconds=10).state == "exited"


async def test_masked_values_never_reach_the_page_or_its_json(http_server, job_root, tmp_path):
    jobs = Jobs(job_root)
    job = jobs.run(
        command="echo ran",
        cwd=str(tmp_path),
        env={"SHOWN": "plain-value", "API_KEY": "masked-secret-value"},
        mask=["API_KEY"],
        wait_seconds=10,
    )
    async with http_server("streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=10) as http:
        base = service.base_url
        await _signed_in(http, base)
        page = (await http.get(f"{base}/jobs/{job.job_id}")).text
        data = (await http.get(f"{base}/api/jobs/{job.job_id}")).json()
        listing = (await http.get(f"{base}/")).text
    assert "plain-value" in page and "API_KEY" in page
    assert {"key": "API_KEY", "value": "***"} in data["definition"]["env"]
    for text in (page, str(data), listing):
        assert "masked-secret-value" not in text


async def test_read_only_hides_the_buttons_and_refuses_the_actions(http_server, job_root, tmp_path):
    jobs, job_id, gate = _gated_job(job_root, tmp_path)
    async with (
        http_server("streamable-http", "--read-only", env=ENV) as service,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        base = service.base_url
        await _signed_in(http, base)
        page = (await http.get(f"{base}/jobs/{job_id}")).text
        assert 'id="kill"' not in page and 'id="restart"' not in page
        for action in ("kill", "restart"):
            response = await http.post(f"{base}/api/jobs/{job_id}/{action}", headers={"Origin": base})
            assert response.status_code == 403, action
            error = response.json()["error"]
            assert error["code"] == "policy_denied" and error["details"]["rule"] == "read_only"
    assert jobs.snapshot(job_id=job_id).state == "running"
    gate.write()
    assert jobs.wait(job_id=job_id, wait_seconds=10).state == "exited"


async def test_a_foreign_host_is_refused(http_server):
    async with http_server("streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=10) as http:
        response = await http.get(f"{service.base_url}/login", headers={"Host": "rebound.example:80"})
        assert response.status_code == 421


async def test_filters_find_jobs_by_state_tag_text_and_folder(http_server, job_root, tmp_path):
    jobs = Jobs(job_root)
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    done = jobs.run(command="echo alpha-marker", cwd=str(here), tags=["team.a"], wait_seconds=10)
    made = jobs.create(command="echo beta", cwd=str(there), tags=["team.b"])
    async with http_server("streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=10) as http:
        base = service.base_url
        await _signed_in(http, base)

        async def ids(query: str) -> list[str]:
            return [j["job_id"] for j in (await http.get(f"{base}/api/jobs?{query}")).json()["jobs"]]

        assert await ids("") == [made.job_id, done.job_id]  # newest first
        assert await ids("state=exited") == [done.job_id]
        assert await ids("tag=team.*") == [made.job_id, done.job_id]
        assert await ids("tag=team.b") == [made.job_id]
        assert await ids("q=ALPHA-marker") == [done.job_id]
        assert await ids(f"q={made.job_id[:6]}") == [made.job_id]
        # "This folder" is the server's: the test's own working directory holds neither job.
        assert await ids("scope=here") == []
        rows = (await http.get(f"{base}/api/rows?state=created")).text
    assert made.job_id in rows and done.job_id not in rows


async def test_load_earlier_pages_back_to_the_whole_log(http_server, job_root, tmp_path):
    jobs = Jobs(job_root)
    job = jobs.run(command="seq 1 30000", cwd=str(tmp_path), wait_seconds=30)
    whole = "".join(f"{i}\n" for i in range(1, 30001))
    async with http_server("streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=10) as http:
        base = service.base_url
        await _signed_in(http, base)
        first = (await http.get(f"{base}/api/jobs/{job.job_id}")).json()["snapshot"]
        begin, end = first["stdout_range"]
        text = first["stdout_tail"]
        assert 0 < begin < end == len(whole)
        while begin > 0:
            offset = max(0, begin - 10000)
            page = (
                await http.get(f"{base}/api/jobs/{job.job_id}/log/stdout?offset={offset}&max_bytes={begin - offset}")
            ).json()
            assert page["end"] == begin
            text, begin = page["text"] + text, page["begin"]
        download = await http.get(f"{base}/jobs/{job.job_id}/log/stdout")
    assert text == whole
    assert download.status_code == 200 and download.text == whole
    assert "attachment" in download.headers["content-disposition"]


async def test_the_job_stream_sends_new_output_and_the_end(http_server, job_root, tmp_path):
    _, job_id, gate = _gated_job(job_root, tmp_path)
    async with http_server("streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=30) as http:
        base = service.base_url
        await _signed_in(http, base)
        seen: list[str] = []
        async with http.stream("GET", f"{base}/events/{job_id}?stdout=0&stderr=0") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                seen.append(line)
                if line == "event: state" and len(seen) < 3:
                    gate.write()  # the stream is open: let the job end now
                if line.startswith("data:") and '"exited"' in line:
                    break
    assert seen[0] == "event: state" and '"running"' in seen[1]
    assert '"exited"' in seen[-1]


def _web(job_root: Path, state_home: Path, tmp_path: Path, stderr: Any) -> subprocess.Popen[str]:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(REPO),
        "XDG_STATE_HOME": str(state_home),
        "HOME": str(tmp_path),
        **ENV,
    }
    argv = [sys.executable, "-m", "server", "web", "--port", "0", "--root", str(job_root)]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=stderr, text=True, env=env, cwd=tmp_path)


def test_agent_jobs_web_serves_the_page_alone_and_logs_no_token(job_root, state_home, tmp_path):
    proc = _web(job_root, state_home, tmp_path, subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line = next(line for line in proc.stderr if "web page at" in line)
        assert TOKEN not in line and "AGENT_JOBS_TOKEN" in line
        base = line.split("web page at ", 1)[1].split(" ", 1)[0].rstrip("/")
        assert base.startswith("http://127.0.0.1:")
        with httpx2.Client(timeout=10) as http:
            assert http.get(f"{base}/?token={TOKEN}").status_code == 303
            assert http.get(f"{base}/").status_code == 200
            assert http.get(f"{base}/api/jobs").json()["root"] == str(job_root)
            assert http.post(f"{base}/mcp", json={}).status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_on_a_terminal_the_sign_in_link_carries_the_token(job_root, state_home, tmp_path):
    """As Jupyter does: a person at a terminal gets a link to open; a log file never gets the token."""
    leader, follower = pty.openpty()
    proc = _web(job_root, state_home, tmp_path, follower)
    os.close(follower)
    try:
        seen = b""
        while b"web page at" not in seen or not seen.endswith(b"\n"):
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready, f"no sign-in line within 30 s: {seen!r}"
            seen += os.read(leader, 4096)
        line = next(line for line in seen.decode().splitlines() if "web page at" in line)
        assert line.endswith(f"/?token={TOKEN}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.close(leader)


def test_the_page_offers_every_state_and_signal_the_engine_knows():
    from jobcore.inputs import SIGNALS as ENGINE_SIGNALS
    from jobcore.supervisor.records import JOB_STATES

    assert tuple(STATES) == tuple(JOB_STATES)
    assert tuple(SIGNALS) == tuple(ENGINE_SIGNALS)


@pytest.mark.parametrize("command", ["serve", "web"])
def test_web_flags_are_serves(command):
    from server import config

    cfg = config.parse(["--port", "0", "--no-auth", "--read-only"], {}, command=command)
    assert cfg.token is None and cfg.policy.read_only
    assert cfg.transports == (() if command == "web" else ("stdio",))


async def test_a_store_of_500_jobs_is_one_whole_page(http_server, job_root, tmp_path):
    """Every job on one page, quickly: ``python -m bench`` holds the figure (aim: under 300 ms)."""
    jobs = Jobs(job_root)
    for i in range(500):
        jobs.create(command=f"echo {i}", cwd=str(tmp_path))
    async with http_server("streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=30) as http:
        await _signed_in(http, service.base_url)
        started = time.monotonic()
        page = await http.get(f"{service.base_url}/")
        took = time.monotonic() - started
    assert page.text.count("data-job-id=") == 500
    assert took < 5, f"the page of 500 jobs took {took:.1f} s"


async def test_the_sign_in_link_leaves_no_token_in_the_address_once_signed_in(http_server):
    async with http_server("streamable-http", env=ENV) as service, httpx2.AsyncClient(timeout=10) as http:
        await _signed_in(http, service.base_url)
        again = await http.get(f"{service.base_url}/?token={TOKEN}")
    assert again.status_code == 303 and again.headers["location"] == "/"
