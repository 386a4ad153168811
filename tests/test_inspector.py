"""The MCP Inspector CLI, an independent client, against the server over stdio and streamable HTTP.

The Inspector validates every ``structuredContent`` against the tool's outputSchema (errors included)
and fails the call when it does not match; it silently skips a schema its Ajv cannot compile, so one
test compiles every schema with the Inspector's own validator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import INSPECTOR, INSPECTOR_DIR, REPO
from helpers import TOOLS

pytestmark = pytest.mark.usefixtures("inspector_installed")


class Inspector:
    """One ``mcp-inspector --cli`` invocation per call (each is a new connection), output parsed."""

    def __init__(self, home: Path, target: list[str]) -> None:
        self.env = {"PATH": os.environ["PATH"], "HOME": str(home)}
        self.target = target

    async def __call__(self, method: str, tool: str | None = None, args: dict[str, Any] | None = None):
        cmd = [str(INSPECTOR), "--cli", *self.target, "--method", method, "--format", "json", "-q"]
        if tool is not None:
            cmd += ["--tool-name", tool, "--tool-args-json", json.dumps(args or {})]
        with anyio.fail_after(60):
            done = await anyio.run_process(cmd, env=self.env, check=False, stdin=subprocess.DEVNULL)
        out = done.stdout.decode()
        result = json.loads(out)["result"] if out.strip() else None
        return done.returncode, result, done.stderr.decode()

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        rc, result, err = await self("tools/call", tool, args)
        assert rc == 0, (rc, result, err)
        assert result["isError"] is False
        assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
        return result["structuredContent"]


async def _scenario(inspector: Inspector) -> None:
    rc, listed, err = await inspector("tools/list")
    assert rc == 0, err
    assert {t["name"] for t in listed["tools"]} == TOOLS
    assert all("outputSchema" in t for t in listed["tools"])

    run = await inspector.call("run_job", {"command": "echo from-inspector; exit 2"})
    assert run["state"] == "exited" and run["exit_code"] == 2
    assert run["final_snapshot"]["stdout_tail"] == "from-inspector\n"

    long = await inspector.call("run_job", {"command": "echo waiting; exec sleep 60", "wait_seconds": 0})
    assert long["state"] == "running"
    waited = await inspector.call("wait", {"job_id": long["job_id"], "wait_seconds": 0.3})
    assert waited["timed_out"] is True and waited["state"] == "running"
    snap = await inspector.call("snapshot", {"job_id": long["job_id"]})
    assert snap["state"] == "running"
    killed = await inspector.call("kill", {"job_id": long["job_id"], "signal": "SIGKILL"})
    assert killed["state"] == "killed"

    for tool in ("wait", "snapshot"):
        rc, result, _ = await inspector("tools/call", tool, {"job_id": "ffff0000ffff"})
        assert rc == 5  # the Inspector's exit code for an isError result
        assert result["isError"] is True
        assert result["structuredContent"]["error"]["code"] == "job_not_found"

    rc, result, _ = await inspector("tools/call", "run_job", {"command": "true", "wait_secs": 1})
    assert rc == 5 and result["structuredContent"]["error"]["code"] == "invalid_input"


async def test_inspector_over_stdio(job_root: Path, server_cwd: Path, tmp_path: Path):
    target = ["-e", f"PYTHONPATH={REPO}", "--cwd", str(server_cwd), sys.executable, "-m", "server", "serve"]
    await _scenario(Inspector(tmp_path, [*target, "--root", str(job_root)]))


async def test_inspector_over_streamable_http_with_a_token(http_server, tmp_path: Path):
    async with http_server("streamable-http", env={"AGENT_JOBS_TOKEN": "tok-123"}) as service:
        url = service.urls["streamable-http"]
        base = ["--transport", "http", "--server-url", url]
        await _scenario(Inspector(tmp_path, [*base, "--header", "Authorization: Bearer tok-123"]))
        rc, _, _ = await Inspector(tmp_path, [*base, "--stored-auth-only"])("tools/list")
        assert rc == 3  # auth required


async def test_inspector_over_sse(http_server, tmp_path: Path):
    async with http_server("sse") as service:
        token = service.cfg.token  # made by the server: no token was configured
        auth = ["--header", f"Authorization: Bearer {token}"]
        target = ["--transport", "sse", "--server-url", service.urls["sse"], *auth]
        inspector = Inspector(tmp_path, target)
        run = await inspector.call("run_job", {"command": ["echo", "sse"]})
        assert run["final_snapshot"]["stdout_tail"] == "sse\n"


VALIDATE_JS = """
const { AjvJsonSchemaValidator } = await import(process.argv[1]);
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const v = new AjvJsonSchemaValidator();
const out = cases.map(({ schema, good, bad }) => {
  const check = v.getValidator(schema);  // throws if Ajv cannot compile the schema
  return { good: good.map((g) => check(g).valid), bad: bad.map((b) => check(b).valid) };
});
console.log(JSON.stringify(out));
"""


def test_inspector_validator_compiles_every_output_schema(job_root: Path):
    from jobcore import ErrorInfo, ErrorPayload, Jobs
    from server import config
    from server.app import build_server

    tools = anyio.run(build_server(config.parse(["--root", str(job_root)], {})).list_tools)
    error = ErrorPayload(error=ErrorInfo(code="job_not_found", message="m", details={"job_id": "abcd"})).to_dict()
    run = Jobs(job_root).run(command="echo hi").to_dict()
    cases = []
    for tool in tools:
        good = [error] + ([run] if tool.name == "run_job" else [])
        bad = [{**error, "error": None}, {"ok": True}] + ([{**run, "state": "done"}] if tool.name == "run_job" else [])
        cases.append({"schema": tool.output_schema, "good": good, "bad": bad})
    module = INSPECTOR_DIR / "node_modules/@modelcontextprotocol/client/dist/validators/ajv.mjs"
    done = subprocess.run(
        ["node", "--input-type=commonjs", "-e", f"(async () => {{{VALIDATE_JS}}})()", str(module)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for tool, verdict in zip(tools, json.loads(done.stdout), strict=True):
        assert all(verdict["good"]), tool.name
        assert not any(verdict["bad"]), tool.name
