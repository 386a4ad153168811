"""``agent-jobs`` in a real terminal (a pty): a coloured table that fits, no colour under NO_COLOR, live logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import ANSI, REPO, Terminal, cli
from helpers import Fifo


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def _jobs(job_root: Path, work: Path) -> list[str]:
    long_command = "echo " + "a-rather-long-argument " * 12
    ids = []
    for args in (("--tag", "ci.build", long_command), ("exit 3",)):
        done = cli(job_root, "run", *args, cwd=work)
        ids.append(done.stdout.strip())
        cli(job_root, "wait", ids[-1], cwd=work)
    return ids


def test_ls_in_a_terminal_is_a_coloured_table_of_80_columns(job_root: Path, work: Path):
    ids = _jobs(job_root, work)
    code, screen = Terminal(job_root, "ls", cwd=work, cols=80).finish()
    assert code == 0, screen
    assert "\x1b[" in screen  # coloured
    lines = ANSI.sub("", screen).replace("\r", "").splitlines()
    assert lines[0].split() == ["ID", "STATE", "EXIT", "STARTED", "TIME", "TAGS", "COMMAND"]
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[1].split()[:3] == [ids[1][:8], "exited", "3"]
    assert lines[2].split()[0] == ids[0][:8] and "ci.build" in lines[2] and lines[2].rstrip().endswith("…")


def test_no_color_turns_the_colour_off(job_root: Path, work: Path):
    _jobs(job_root, work)
    code, screen = Terminal(job_root, "ls", cwd=work, cols=80, NO_COLOR="1").finish()
    assert code == 0, screen
    assert "\x1b[" not in screen
    assert all(len(line) <= 80 for line in screen.replace("\r", "").splitlines())


def test_logs_follow_shows_each_line_as_the_job_prints_it_and_returns_at_the_end(
    job_root: Path, work: Path, tmp_path: Path
):
    go, more = Fifo(tmp_path / "go"), Fifo(tmp_path / "more")
    # The job prints, then waits for the test; the second line comes only after the first is on screen.
    job_id = cli(job_root, "run", f"echo first; read x < {go.path}; echo second; read x < {more.path}", cwd=work)
    job_id = job_id.stdout.strip()
    term = Terminal(job_root, "logs", "-f", job_id, cwd=work)
    term.read_until("first")
    with open(go.path, "w") as fh:
        fh.write("go\n")
    term.read_until("second")  # on screen while the job still runs, blocked on `more`
    assert term.proc.poll() is None
    with open(more.path, "w") as fh:
        fh.write("end\n")
    code, screen = term.finish()
    assert code == 0
    assert screen.replace("\r", "") == "first\nsecond\n"


def test_run_wait_in_a_terminal_streams_and_exits_with_the_code(job_root: Path, work: Path):
    code, screen = Terminal(job_root, "run", "--wait", "echo hello; exit 3", cwd=work).finish()
    assert code == 3
    assert "hello" in screen


def test_ls_imports_neither_the_mcp_sdk_nor_the_models(job_root: Path, work: Path):
    """The table is read from the index: pydantic and the payload models would double a cold start."""
    _jobs(job_root, work)
    heavy = ("mcp", "server.app", "pydantic", "jobcore.payloads", "jobcore.inputs", "importlib.metadata")
    probe = (
        "import sys; from cli.main import main; code = main(['ls']);"
        f"bad = sorted(m for m in sys.modules if m.startswith({heavy!r}));"
        "print(bad)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=work,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "AGENT_JOBS_ROOT": str(job_root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
