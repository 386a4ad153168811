"""Each ``agent-jobs`` command on real jobs: the text people read, the ``--json`` payloads, the exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import REPO, check_schema, cli, cli_env, payload_of
from helpers import Fifo


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def _run(job_root: Path, work: Path, *args: str) -> str:
    done = cli(job_root, "run", *args, cwd=work)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_run_prints_the_id_and_wait_exits_with_the_jobs_code(job_root: Path, work: Path):
    job_id = _run(job_root, work, "--tag", "ci", "--env", "WHO=world", "--", "sh", "-c", 'echo "hi $WHO"; exit 5')
    assert len(job_id) == 32
    done = cli(job_root, "wait", job_id[:6], cwd=work)
    assert done.returncode == 5, done.stderr
    assert done.stdout == f"{job_id} exited with code 5\n"
    waited = payload_of(cli(job_root, "wait", job_id, "--json", cwd=work), "wait")
    assert (waited["exit_code"], waited["final_snapshot"]["stdout_tail"]) == (5, "hi world\n")


def test_run_wait_streams_the_output_and_exits_with_the_jobs_code(job_root: Path, work: Path):
    done = cli(job_root, "run", "--wait", "echo out; echo err >&2; exit 3", cwd=work)
    assert done.returncode == 3
    assert done.stdout == "out\n"
    assert done.stderr.endswith("err\n") and "agent-jobs: job " in done.stderr
    as_json = cli(job_root, "run", "--wait", "--json", "--", "sh", "-c", "echo out; exit 3", cwd=work)
    assert as_json.returncode == 3
    payload = payload_of(as_json, "run")
    assert (payload["state"], payload["exit_code"], payload["final_snapshot"]["stdout_tail"]) == ("exited", 3, "out\n")


def test_run_json_without_wait_is_the_run_payload(job_root: Path, work: Path):
    payload = payload_of(cli(job_root, "run", "--json", "--tag", "a.b", "true", cwd=work), "run")
    assert payload["type"] == "run" and payload["tags"] == ["a.b"]


def test_a_signalled_job_exits_as_a_shell_reports_it(job_root: Path, work: Path):
    done = cli(job_root, "run", "--wait", "kill -TERM $$", cwd=work)
    assert done.returncode == 128 + 15, done.stderr


def test_wait_timeout_exits_124_and_kill_stops_the_job(job_root: Path, work: Path):
    job_id = _run(job_root, work, "sleep 60")
    done = cli(job_root, "wait", job_id, "--timeout", "0.2", cwd=work)
    assert done.returncode == 124
    assert done.stdout.startswith(f"{job_id} still running after ")
    timed_out = cli(job_root, "wait", job_id, "--timeout", "0", "--json", cwd=work)
    assert timed_out.returncode == 124 and payload_of(timed_out, "wait")["timed_out"] is True
    killed = cli(job_root, "kill", job_id, cwd=work)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout == f"{job_id} sent SIGTERM: killed by SIGTERM\n"
    again = payload_of(cli(job_root, "kill", job_id, "--json", cwd=work), "kill")
    assert again["already_ended"] is True


def test_kill_with_a_signal_and_json(job_root: Path, work: Path):
    job_id = _run(job_root, work, "sleep 60")
    payload = payload_of(cli(job_root, "kill", job_id, "--signal", "KILL", "--json", cwd=work), "kill")
    assert (payload["signal"], payload["state"], payload["end_signal"]) == ("SIGKILL", "killed", "SIGKILL")


def test_ls_lists_this_folder_newest_first_with_filters(job_root: Path, work: Path, tmp_path: Path):
    first = _run(job_root, work, "--tag", "ci", "echo one")
    second = _run(job_root, work, "--tag", "ci", "--tag", "deploy", "exit 7")
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    third = _run(job_root, elsewhere, "true")
    for job_id in (first, second, third):
        cli(job_root, "wait", job_id, cwd=work)
    done = cli(job_root, "ls", cwd=work)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATE", "EXIT", "STARTED", "TIME", "TAGS", "COMMAND"]
    assert [line.split()[0] for line in lines[1:]] == [second[:8], first[:8]]
    assert lines[1].split()[1:3] == ["exited", "7"] and "ci,deploy" in lines[1]
    assert "\x1b[" not in done.stdout  # no colour on a pipe
    listed = payload_of(cli(job_root, "list", "--all", "--json", cwd=work), "list")
    assert [j["job_id"] for j in listed["jobs"]] == [third, second, first]
    tagged = payload_of(cli(job_root, "ls", "--tag", "ci", "--tag", "deploy", "--json", cwd=work), "list")
    assert [j["job_id"] for j in tagged["jobs"]] == [second]
    limited = payload_of(cli(job_root, "ls", "--all", "--limit", "1", "--state", "exited", "--json", cwd=work), "list")
    assert len(limited["jobs"]) == 1 and limited["truncated"] is True


def _table_ids(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    if lines[0].startswith("no jobs to show"):
        return []
    return [line.split()[0] for line in lines[1:] if not line.startswith("(more jobs")]


def test_the_ls_table_shows_the_jobs_list_jobs_returns(job_root: Path, work: Path, tmp_path: Path):
    """The table is read from the index without the verb: the same jobs, in the same order, for every filter."""
    below = work / "sub" / "dir"
    below.mkdir(parents=True)
    beside = tmp_path / "work-other"  # shares the folder's name as a prefix, but is not below it
    beside.mkdir()
    ids = [
        _run(job_root, work, "--tag", "team.web", "exit 3"),
        _run(job_root, below, "--tag", "team", "true"),
        _run(job_root, beside, "--tag", "team.db", "true"),
        _run(job_root, work, "sleep 60"),
    ]
    for job_id in ids[:3]:
        cli(job_root, "wait", job_id, cwd=work)
    for where, args in [
        (work, []),
        (below, []),
        (beside, ["--all"]),
        (work, ["--state", "exited"]),
        (work, ["--state", "running"]),
        (work, ["--all", "--tag", "team.*"]),
        (work, ["--tag", "team.web", "--tag", "team.*"]),
        (work, ["--tag", "team"]),
        (work, ["--all", "--limit", "2"]),
        (work, ["--limit", "0"]),
    ]:
        listed = payload_of(cli(job_root, "ls", "--json", *args, cwd=where), "list")
        table = cli(job_root, "ls", *args, cwd=where)
        assert _table_ids(table) == [j["job_id"][:8] for j in listed["jobs"]], (where, args)
        assert ("(more jobs than --limit" in table.stdout) == listed["truncated"]
    cli(job_root, "kill", ids[3], cwd=work)


def test_ls_refuses_what_list_jobs_refuses_in_its_words(job_root: Path, work: Path):
    _run(job_root, work, "true")
    for args, field in [(["--limit", "-1"], "limit"), (["--tag", "no spaces"], "tags")]:
        table = cli(job_root, "ls", *args, cwd=work)
        as_json = cli(job_root, "ls", "--json", *args, cwd=work)
        assert table.returncode == as_json.returncode == 2, table.stderr
        assert table.stderr == as_json.stderr and table.stderr.startswith(f"agent-jobs: error: {field}")
        assert json.loads(as_json.stdout)["error"]["code"] == "invalid_input"


def test_the_ls_tag_filter_is_the_one_list_jobs_takes():
    from cli.ls import TAG_FILTER
    from jobcore import inputs

    assert TAG_FILTER.pattern == inputs._TAG_FILTER.pattern


def test_ls_of_an_empty_store_says_so(job_root: Path, work: Path):
    done = cli(job_root, "ls", cwd=work)
    assert done.returncode == 0
    assert done.stdout.startswith(f"no jobs to show in {job_root}")


def test_show_prints_the_record_and_the_tails(job_root: Path, work: Path):
    job_id = _run(job_root, work, "--tag", "x", "echo to-out; echo to-err >&2")
    cli(job_root, "wait", job_id, cwd=work)
    done = cli(job_root, "show", job_id[:5], cwd=work)
    assert done.returncode == 0, done.stderr
    fields = dict(line.split(None, 1) for line in done.stdout.splitlines() if line and not line.startswith(("-", "to")))
    assert fields["job_id"] == job_id and fields["state"] == "exited" and fields["cwd"] == str(work)
    assert "--- stdout (tail) ---\nto-out\n--- stderr (tail) ---\nto-err\n" in done.stdout
    payload = payload_of(cli(job_root, "show", job_id, "--json", cwd=work), "snapshot")
    assert payload["tags"] == ["x"] and payload["snapshot"]["stderr_tail"] == "to-err\n"


def test_logs_prints_the_chosen_stream_and_the_last_lines(job_root: Path, work: Path):
    job_id = _run(job_root, work, "printf 'a\\nb\\nc\\n'; echo e >&2")
    cli(job_root, "wait", job_id, cwd=work)
    assert cli(job_root, "logs", job_id, cwd=work).stdout == "a\nb\nc\n"
    assert cli(job_root, "logs", job_id, "-n", "2", cwd=work).stdout == "b\nc\n"
    assert cli(job_root, "logs", job_id, "--stderr", cwd=work).stdout == "e\n"
    both = cli(job_root, "logs", job_id, "--both", cwd=work)
    assert (both.stdout, both.stderr) == ("a\nb\nc\n", "e\n")
    payload = payload_of(cli(job_root, "logs", job_id, "--json", cwd=work), "snapshot")
    assert payload["snapshot"]["stdout_tail"] == "a\nb\nc\n"


def test_logs_follow_json_is_one_snapshot_per_line_and_ends_with_the_job(job_root: Path, work: Path, tmp_path: Path):
    go = Fifo(tmp_path / "go")
    job_id = _run(job_root, work, f"echo first; read x < {go.path}; echo second")
    follower = subprocess.Popen(
        [sys.executable, "-m", "cli", "logs", "-f", "--json", job_id],
        cwd=work,
        env=cli_env(job_root),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    seen = ""
    while "first" not in seen:
        line = follower.stdout.readline()
        assert line, "logs -f ended before the job"
        check_schema(json.loads(line), "snapshot")
        seen += json.loads(line)["snapshot"]["stdout_tail"]
    with open(go.path, "w") as fh:
        fh.write("go\n")
    rest, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0
    for line in rest.splitlines():
        payload = json.loads(line)
        check_schema(payload, "snapshot")
        seen += payload["snapshot"]["stdout_tail"]
    assert seen == "first\nsecond\n"


def test_tag_restart_and_rm(job_root: Path, work: Path):
    job_id = _run(job_root, work, "echo again")
    cli(job_root, "wait", job_id, cwd=work)
    tagged = cli(job_root, "tag", job_id, "b", "a.c", cwd=work)
    assert tagged.stdout == f"{job_id} b a.c\n"
    assert payload_of(cli(job_root, "tag", job_id, "z", "--json", cwd=work), "tag")["tags"] == ["z"]
    restarted = cli(job_root, "restart", job_id, cwd=work)
    assert restarted.returncode == 0 and restarted.stdout == f"{job_id}\n"
    assert cli(job_root, "wait", job_id, cwd=work).returncode == 0
    assert payload_of(cli(job_root, "restart", job_id, "--json", cwd=work), "restart")["type"] == "restart"
    cli(job_root, "wait", job_id, cwd=work)
    dry = payload_of(cli(job_root, "rm", "--older-than", "0s", "--dry-run", "--json", cwd=work), "delete")
    assert [(j["job_id"], j["action"]) for j in dry["jobs"]] == [(job_id, "would_delete")]
    gone = cli(job_root, "rm", job_id, cwd=work)
    assert gone.returncode == 0 and gone.stdout.startswith(f"{job_id} deleted")
    assert not (job_root / job_id).exists()


def test_rm_refuses_a_running_job(job_root: Path, work: Path):
    job_id = _run(job_root, work, "sleep 60")
    done = cli(job_root, "rm", job_id, cwd=work)
    assert done.returncode == 1
    assert done.stdout == f"{job_id} skipped: running\n"
    assert (job_root / job_id).is_dir()
    cli(job_root, "kill", job_id, "-s", "KILL", cwd=work)


def test_errors_are_one_line_with_the_right_exit_code(job_root: Path, work: Path):
    unknown = cli(job_root, "wait", "abcd1234", cwd=work)
    assert unknown.returncode == 1
    assert unknown.stderr == f"agent-jobs: error: no job matches 'abcd1234' under {job_root}\n"
    as_json = cli(job_root, "show", "abcd1234", "--json", cwd=work)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"]["code"] == "job_not_found"
    job_id = _run(job_root, work, "true")
    cli(job_root, "wait", job_id, cwd=work)
    twin = job_id[:8] + ("0" * 24 if job_id[8:] != "0" * 24 else "1" * 24)
    # A second job sharing the first 8 characters (its FIFO left out: copytree refuses named pipes).
    shutil.copytree(job_root / job_id, job_root / twin, ignore=shutil.ignore_patterns("*.fifo"))
    ambiguous = cli(job_root, "show", job_id[:8], cwd=work)
    assert ambiguous.returncode == 1
    assert ambiguous.stderr.startswith(f"agent-jobs: error: '{job_id[:8]}' matches 2 jobs")
    assert f"(candidates: {', '.join(sorted([job_id, twin]))})" in ambiguous.stderr
    usage = cli(job_root, "ls", "--state", "bogus", cwd=work)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    bad_tag = cli(job_root, "run", "--tag", "no spaces", "true", cwd=work)
    assert bad_tag.returncode == 2 and bad_tag.stderr.startswith("agent-jobs: error: tags")
    assert len(list(job_root.glob("*/meta.json"))) == 2  # the refused run created nothing
    two_words = cli(job_root, "run", "echo", "hi", cwd=work)
    assert two_words.returncode == 2 and "put -- before COMMAND" in two_words.stderr


def test_serve_and_version_are_unchanged(job_root: Path, work: Path):
    from importlib.metadata import version

    done = subprocess.run(
        [sys.executable, "-m", "cli", "--version"], env=cli_env(job_root), capture_output=True, text=True, timeout=30
    )
    assert done.stdout == f"agent-jobs {version('agent-jobs')}\n"
    bad = cli(job_root, "serve", "--bogus", cwd=work)
    assert bad.returncode == 2 and "agent-jobs serve: error: unrecognized arguments: --bogus" in bad.stderr
    assert (REPO / "cli" / "main.py").is_file()
