"""The policy surface: flags and ``--policy`` file, the ``server_info`` tool, read-only mode as an
agent sees it, and a job store the server cannot use stopping it before it serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import TOOLS, ServerProcess, serve_once
from jsonschema import Draft202012Validator
from mcp import Client

READ_ONLY_TOOLS = {"snapshot", "search_output", "wait", "list_jobs", "server_info"}


async def test_server_info_shows_the_policy_and_limits(stdio_server, tmp_path: Path, job_root: Path):
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('deny_commands = ["rm*"]\nallow_commands = ["make*"]\nmax_running = 9\n')
    flags = ("--policy", str(policy_file), "--allow-command", "echo*", "--allow-root", str(tmp_path))
    flags += ("--pass-env", "PATH", "--pass-env", "LANG", "--max-running", "3")
    env = {"AGENT_JOBS_MAX_WAIT_SECONDS": "20"}
    async with Client(stdio_server(*flags, env=env), mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("server_info", {})
        refused = await client.call_tool("server_info", {"verbose": True})
    info = result.structured_content
    assert result.is_error is False and json.loads(result.content[0].text) == info
    assert (info["ok"], info["type"], info["schema_version"]) == (True, "server_info", "0.1")
    assert info["root"] == str(job_root) and info["version"]
    assert info["policy"] == {
        "allowed_roots": [str(tmp_path)],
        "allow_commands": ["echo*"],  # the flag replaces the file's list
        "deny_commands": ["rm*"],  # the file's, no flag given
        "pass_env": ["PATH", "LANG"],
        "read_only": False,
        "max_running": 3,
        "backends": None,
        "slurm_partitions": None,
    }
    assert info["backend"] == "local"
    assert info["limits"] == {
        "max_wait_seconds": 20,
        "default_wait_seconds": {"run_job": 10, "start_job": 10, "restart_job": 10, "wait": 20, "kill": 3},
        "max_bytes": 1048576,
    }
    Draft202012Validator(tools["server_info"].output_schema).validate(info)
    assert tools["server_info"].annotations.read_only_hint is True
    assert tools["server_info"].input_schema["properties"] == {}
    assert refused.is_error and refused.structured_content["error"]["code"] == "invalid_input"
    assert "verbose" in refused.structured_content["error"]["message"]


async def test_read_only_lists_every_tool_and_says_which_are_refused(stdio_server):
    async with Client(stdio_server("--read-only"), mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        instructions = client.instructions or ""
        info = (await client.call_tool("server_info", {})).structured_content
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        refused = tool.description.startswith("Refused by this server's policy (read-only). ")
        assert refused == (name not in READ_ONLY_TOOLS), name
    assert "read-only" in instructions and "server_info" in instructions
    assert info["policy"]["read_only"] is True


async def test_read_only_refuses_run_job_and_creates_nothing(stdio_server, job_root: Path):
    """Passes once the engine enforces the policy (its read-only rule)."""
    async with Client(stdio_server("--read-only"), mode="legacy") as client:
        ran = await client.call_tool("run_job", {"command": "touch should-not-exist"})
        created = await client.call_tool("create_job", {"command": "true"})
        listed = await client.call_tool("list_jobs", {"all": True})
    for result in (ran, created):
        assert result.is_error is True
        error = result.structured_content["error"]
        assert error["code"] == "policy_denied" and error["details"]["rule"] == "read_only"
    assert listed.is_error is False and listed.structured_content["jobs"] == []
    assert not any(job_root.iterdir())


def test_the_policy_in_force_is_logged_at_start(job_root: Path):
    done = serve_once("--root", str(job_root), "--deny-command", "rm*", "--read-only")
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if " policy: " in line]
    assert " INFO " in line
    policy = json.loads(line.split(" policy: ", 1)[1])
    assert policy["deny_commands"] == ["rm*"] and policy["read_only"] is True


@pytest.mark.parametrize(
    ("name", "text", "named"),
    [
        ("policy.toml", "read_only = maybe\n", "not valid TOML"),
        ("policy.json", '{"read_only": true,', "not valid JSON"),
        ("policy.json", '{"max_running": 0}', "max_running"),
        ("policy.toml", 'colour = "red"\n', "colour"),
        ("policy.toml", 'allow_commands = "make"\n', "allow_commands"),
    ],
)
def test_a_bad_policy_file_stops_the_server(tmp_path: Path, job_root: Path, name: str, text: str, named: str):
    path = tmp_path / name
    path.write_text(text)
    done = serve_once("--root", str(job_root), "--policy", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith("agent-jobs: error: --policy ") and str(path) in done.stderr
    assert named in done.stderr
    assert done.stdout == ""
    assert not job_root.exists()  # refused before anything is made


def test_bad_policy_flags_stop_the_server(tmp_path: Path, job_root: Path):
    missing = serve_once("--root", str(job_root), "--policy", str(tmp_path / "absent.toml"))
    assert missing.returncode == 2 and "--policy" in missing.stderr and "absent.toml" in missing.stderr
    zero = serve_once("--root", str(job_root), "--max-running", "0")
    assert zero.returncode == 2 and "--max-running" in zero.stderr
    word = serve_once("--root", str(job_root), "--max-running", "many")
    assert word.returncode == 2 and "--max-running" in word.stderr
    empty = serve_once("--root", str(job_root), "--deny-command", "")
    assert empty.returncode == 2 and "--deny-command" in empty.stderr


def _refused_at_start(transport: str, root: Path | str, tmp_path: Path) -> str:
    """Start the server on ``root``; it must refuse before serving (exit 2). Its refusal on stderr."""
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    with ServerProcess("--transport", transport, "--port", "0", "--root", str(root), env=env) as server:
        said = server.line("agent-jobs: ")  # either the refusal or, wrongly, the URL it serves
        assert said.startswith("agent-jobs: error: "), said
        assert server.proc.wait(timeout=30) == 2
    return said


@pytest.mark.parametrize("transport", ["stdio", "streamable-http", "sse"])
def test_an_unusable_root_stops_the_server_before_it_serves(transport: str, tmp_path: Path):
    assert "/proc/nope" in _refused_at_start(transport, "/proc/nope", tmp_path)


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
def test_a_world_writable_root_stops_the_server(transport: str, tmp_path: Path):
    """Passes once the engine's prepare() refuses a root other users may write to."""
    root = tmp_path / "open"
    root.mkdir()
    root.chmod(0o777)
    assert str(root) in _refused_at_start(transport, root, tmp_path)


def test_allow_root_folders_are_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from server import config

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    cfg = config.parse(["--allow-root", "~/src", "--allow-root", "rel"], {})
    assert cfg.policy.allowed_roots == [str(tmp_path / "home" / "src"), str(tmp_path / "rel")]
