"""The README's examples work as written: each block is taken from the README and run as a reader would."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import INSPECTOR_DIR, REPO

README = (REPO / "README.md").read_text()


def readme_block(name: str) -> str:
    """The code between ``<!-- name:begin -->`` and ``<!-- name:end -->``, without its fence."""
    found = re.findall(rf"<!-- {name}:begin -->\n```\w*\n(.*?)```\n<!-- {name}:end -->", README, re.DOTALL)
    assert len(found) == 1, f"the README has {len(found)} {name} blocks"
    return found[0]


def _env(tmp_path: Path, agent_jobs_bin: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": f"{agent_jobs_bin}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        **extra,
    }


@pytest.mark.parametrize("name", ["install-command", "test-command"])
def test_setup_commands_are_one_line_each_and_use_only_python3(name: str):
    command = readme_block(name)
    assert command.count("\n") == 1, command
    assert command.startswith("python3 -m venv .venv && .venv/bin/pip install ")
    assert not re.search(r"(^|&& )(pip|python) ", command), command


def test_python_example_runs_against_the_store_named_in_the_callers_environment(
    tmp_path: Path, agent_jobs_bin: Path, job_root: Path
):
    script = tmp_path / "example.py"
    script.write_text(readme_block("python-example"))
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_env(tmp_path, agent_jobs_bin, AGENT_JOBS_ROOT=str(job_root)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    job_id, state, output = done.stdout.split(" ", 2)
    assert (state, output) == ("exited", "hello\n")
    assert (job_root / job_id / "meta.json").is_file()


@pytest.mark.usefixtures("inspector_installed")
def test_inspector_example_works_pasted_as_one_block(tmp_path: Path, agent_jobs_bin: Path):
    checkout = tmp_path / "checkout"
    (checkout / "tests" / "inspector").mkdir(parents=True)
    (checkout / "tests" / "inspector" / "node_modules").symlink_to(INSPECTOR_DIR / "node_modules")
    # `wait` after the block: it returns only once the server the block stopped has exited.
    script = readme_block("inspector-example") + "wait\n"
    out, err = tmp_path / "out", tmp_path / "err"
    # Output to files, not pipes: a server the block failed to stop would hold a pipe open.
    with out.open("w") as stdout, err.open("w") as stderr:
        bash = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=checkout,
            env=_env(tmp_path, agent_jobs_bin, TMPDIR=str(tmp_path)),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            returncode = bash.wait(timeout=180)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(bash.pid, signal.SIGKILL)  # whatever the block left running
    done = subprocess.CompletedProcess(bash.args, returncode, out.read_text(), err.read_text())
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert '"name": "run_job"' in done.stdout  # tools/list over stdio
    assert '"stdout_tail": "hi\\n"' in done.stdout  # run_job over stdio
    assert '"type": "list"' in done.stdout  # list_jobs over HTTP, with the token
    jobs = tmp_path / "home" / ".local" / "share" / "agent-jobs" / "jobs"
    # The HTTP server saw the job stdio made (the root's own entries, such as .index/, start with a dot).
    assert len([p for p in jobs.iterdir() if p.is_dir() and not p.name.startswith(".")]) == 1
