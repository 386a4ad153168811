"""The web page in a real browser: Debian's Chromium driven by Selenium, headless, against a real server.

The server is ``agent-jobs serve`` (streamable HTTP) as a subprocess; jobs are started over MCP and by
the engine, and end when the test says so through FIFOs. Screenshots of both pages, light and dark,
land in ``tests/artifacts/`` for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from helpers import Fifo, ServerProcess
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from jobcore import Jobs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TOKEN = "web-browser-test-token-0123456789"


def _browser_problem() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: apt-get install {package}"
    return None


pytestmark = pytest.mark.skipif(_browser_problem() is not None, reason=str(_browser_problem()))


@pytest.fixture
def server(job_root: Path, state_home: Path, tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    """``agent-jobs serve`` over streamable HTTP, and its base URL."""
    env = {"AGENT_JOBS_TOKEN": TOKEN, "XDG_STATE_HOME": str(state_home), "HOME": str(tmp_path)}
    flags = ("--transport", "streamable-http", "--port", "0", "--root", str(job_root))
    with ServerProcess(*flags, env=env, cwd=tmp_path) as proc:
        # Not a terminal: the line gives the address, never the token.
        line = proc.line("web page at")
        assert TOKEN not in line
        address = line.split("web page at ", 1)[1].split(" ", 1)[0]
        yield proc, address.rstrip("/")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium from the system's packages; never a downloaded browser or driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, timeout: float, message: str) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # A page that reloads (a restart) swaps its elements under the condition: look again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=ignored).until(condition, message)


def _sign_in(driver: Any, base: str) -> None:
    driver.get(f"{base}/?token={TOKEN}")
    _wait(driver, lambda d: d.find_elements("id", "rows"), 10, "the jobs page did not open")


def _screenshot(driver: Any, name: str) -> None:
    """Light and dark shots of the page now shown (by the media feature the stylesheet reads), and a phone's."""
    ARTIFACTS.mkdir(exist_ok=True)
    driver.set_window_size(1280, 1600)
    for scheme in ("light", "dark"):
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
        )
        assert driver.save_screenshot(str(ARTIFACTS / f"{name}-{scheme}.png"))
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    driver.set_window_size(390, 844)
    assert driver.save_screenshot(str(ARTIFACTS / f"{name}-phone.png"))
    driver.set_window_size(1280, 900)


async def _run_over_mcp(base: str, args: dict[str, Any]) -> dict[str, Any]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    async with http, Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as client:
        result = await client.call_tool("run_job", args)
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


def _badge(driver: Any, job_id: str) -> str:
    rows = driver.find_elements("css selector", f'tr[data-job-id="{job_id}"] .badge')
    return rows[0].text if rows else ""


def test_a_job_started_over_mcp_appears_then_ends_without_a_reload(server, browser, tmp_path: Path):
    _, base = server
    _sign_in(browser, base)
    browser.execute_script("window.notReloaded = true")
    gate = Fifo(tmp_path / "gate")
    started = time.monotonic()
    payload = anyio.run(
        _run_over_mcp, base, {"command": f"read x < {gate}; echo done", "wait_seconds": 0, "tags": ["web-test"]}
    )
    job_id = payload["job_id"]
    _wait(browser, lambda d: _badge(d, job_id) == "running", 10, "the new job never showed as running")
    assert time.monotonic() - started < 2 + payload["elapsed_ms"] / 1000, "the job took over 2 s to appear"
    _screenshot(browser, "jobs-page")
    gate.write()
    _wait(browser, lambda d: _badge(d, job_id) == "exited", 10, "the job's end never showed")
    row = browser.find_element("css selector", f'tr[data-job-id="{job_id}"]')
    assert "exit 0" in row.text
    assert browser.execute_script("return window.notReloaded") is True


def test_the_job_page_follows_output_then_kills_and_restarts(server, browser, job_root: Path, tmp_path: Path):
    _, base = server
    jobs = Jobs(job_root)
    gate = Fifo(tmp_path / "gate")
    job = jobs.run(
        command=f"echo first; read x < {gate}; echo after-the-page-opened; exec sleep 1000",
        env={"VISIBLE": "plain-value", "API_KEY": "masked-secret-value"},
        mask=["API_KEY"],
        cwd=str(tmp_path),
        tags=["web-test"],
        wait_seconds=0,
    )
    _sign_in(browser, base)
    browser.get(f"{base}/jobs/{job.job_id}")
    stdout = browser.find_element("id", "stdout")
    _wait(browser, lambda _d: "first" in stdout.text, 10, "the job's first line is not on the page")
    browser.execute_script("window.notReloaded = true")
    gate.write()
    _wait(browser, lambda _d: "after-the-page-opened" in stdout.text, 10, "a line printed later never showed")
    assert browser.execute_script("return window.notReloaded") is True
    assert "masked-secret-value" not in browser.page_source
    assert "plain-value" in browser.page_source
    _screenshot(browser, "job-page")

    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "signal")).select_by_value("SIGTERM")
    browser.find_element("id", "kill").click()
    _wait(browser, lambda d: _alert(d), 5, "no confirmation was asked").accept()
    _wait(browser, lambda d: d.find_element("id", "state").text == "killed", 10, "the page never said killed")
    assert jobs.snapshot(job_id=job.job_id).state == "killed"

    first_start = jobs.snapshot(job_id=job.job_id).started_at
    browser.find_element("id", "restart").click()
    # The job runs again, the page reloads to show the new run; release its gate so it reaches sleep.
    gate.write()
    _wait(browser, lambda d: d.find_element("id", "state").text == "running", 10, "the restart never showed")
    again = jobs.snapshot(job_id=job.job_id)
    assert again.state == "running" and again.started_at != first_start
    jobs.kill(job_id=job.job_id, signal="SIGKILL", wait_seconds=10)


def _alert(driver: Any) -> Any:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
        _ = alert.text
        return alert
    except NoAlertPresentException:
        return False


def test_without_the_token_the_browser_is_sent_to_sign_in(server, browser):
    _, base = server
    browser.get(f"{base}/")
    _wait(browser, lambda d: "/login" in d.current_url, 10, "the page did not ask to sign in")
    field = browser.find_element("id", "token")
    field.send_keys("not-the-token")
    field.submit()
    _wait(browser, lambda d: d.find_elements("id", "login-error"), 10, "a wrong token was not refused")
    field = browser.find_element("id", "token")
    field.send_keys(TOKEN)
    field.submit()
    _wait(browser, lambda d: d.find_elements("id", "rows"), 10, "the right token did not sign in")
    cookie = browser.get_cookie("agent_jobs_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
