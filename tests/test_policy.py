"""The operator's policy, enforced by the engine: each rule allows, refuses (``policy_denied``,
nothing created or changed), and is loaded from TOML or JSON. Real jobs and files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from helpers import Fifo

from jobcore import JobError, Jobs, Policy


def jobs_with(root: Path, **rules) -> Jobs:
    return Jobs(root, policy=Policy(**rules))


def job_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def denied(call, rule: str, **args) -> JobError:
    with pytest.raises(JobError) as caught:
        call(**args)
    assert caught.value.code == "policy_denied", caught.value.message
    assert caught.value.details["rule"] == rule
    assert rule in caught.value.message
    return caught.value


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "in.txt").write_text("outside\n")
    (folder / "vars.env").write_text("A=1\n")
    return folder


def kill_all(jobs: Jobs) -> None:
    for entry in jobs.list(all=True, state="running").jobs:
        jobs.kill(job_id=entry.job_id, signal="SIGKILL", wait_seconds=10)


# --- allowed_roots ----------------------------------------------------------------------------


def test_allowed_roots_admit_paths_under_them(job_root: Path, work: Path) -> None:
    (work / "in.txt").write_text("inside\n")
    (work / "vars.env").write_text("A=1\n")
    jobs = jobs_with(job_root, allowed_roots=[str(work)])
    result = jobs.run(
        command='echo "$A"; cat',
        cwd=str(work),
        stdin_file="in.txt",
        env_files=["vars.env"],
        notify_file="done.ndjson",
        on_output_match={"pattern": "x", "notify_file": str(work / "sub" / "matches.ndjson")},
        wait_seconds=10,
    )
    assert result.final_snapshot.stdout_tail == "1\ninside\n"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({}, "cwd"),
        ({"stdin_file": "OUTSIDE/in.txt"}, "stdin_file"),
        ({"env_files": ["OUTSIDE/vars.env"]}, "env_files"),
        ({"notify_file": "OUTSIDE/done.ndjson"}, "notify_file"),
        ({"notify_file": "../outside/done.ndjson"}, "notify_file"),
        ({"on_output_match": {"pattern": "x", "notify_file": "OUTSIDE/m.ndjson"}}, "on_output_match.notify_file"),
        ({"stdin_file": "escape/in.txt"}, "stdin_file"),
    ],
)
@pytest.mark.parametrize("call", ["run", "create"])
def test_allowed_roots_refuse_paths_outside_them(
    job_root: Path, work: Path, outside: Path, args: dict, field: str, call: str
) -> None:
    (work / "escape").symlink_to(outside)  # inside by name, outside once resolved
    args = json.loads(json.dumps(args).replace("OUTSIDE", str(outside)))
    if field != "cwd":
        args["cwd"] = str(work)
    else:
        args["cwd"] = str(outside)
    jobs = jobs_with(job_root, allowed_roots=[str(work)])
    error = denied(getattr(jobs, call), "allowed_roots", command="cat", **args)
    assert error.details["field"] == field
    assert job_dirs(job_root) == []


def test_an_allowed_root_reached_through_a_symlink_counts_as_itself(job_root: Path, work: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(work)
    jobs = jobs_with(job_root, allowed_roots=[str(link)])
    assert jobs.run(command="pwd", cwd=str(work), wait_seconds=10).state == "exited"


def test_a_definition_that_predates_the_roots_is_refused_at_start_and_restart(
    job_root: Path, work: Path, outside: Path
) -> None:
    created = Jobs(job_root).create(command="true", cwd=str(outside)).job_id
    ran = Jobs(job_root).run(command="echo first", cwd=str(outside), wait_seconds=10).job_id
    strict = jobs_with(job_root, allowed_roots=[str(work)])
    denied(strict.start, "allowed_roots", job_id=created)
    assert strict.snapshot(job_id=created).state == "created"
    assert not (job_root / created / "supervisor.ack").exists()
    denied(strict.restart, "allowed_roots", job_id=ran)
    after = strict.snapshot(job_id=ran)
    assert (after.state, after.snapshot.stdout_tail) == ("exited", "first\n")


# --- allow_commands / deny_commands -----------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["rm", "-rf", "nothing-here"],
        ["/bin/rm", "-rf", "nothing-here"],
        "rm -rf nothing-here",
        "  /usr/bin/rm  -rf nothing-here",
        "'rm' x",
        "echo hi; rm -rf nothing-here",
        "unbalanced 'quote rm",
    ],
)
def test_deny_commands_refuse_by_program_or_whole_command(job_root: Path, command: str | list[str]) -> None:
    jobs = jobs_with(job_root, deny_commands=["rm", "*rm -rf*", "unbalanced*"])
    error = denied(jobs.run, "deny_commands", command=command)
    assert error.details["field"] == "command"
    assert job_dirs(job_root) == []


def test_allow_commands_admit_only_what_matches(job_root: Path) -> None:
    jobs = jobs_with(job_root, allow_commands=["echo", "printf *", "/usr/bin/env"])
    assert jobs.run(command="echo hi", wait_seconds=10).final_snapshot.stdout_tail == "hi\n"
    assert jobs.run(command=["/bin/echo", "argv"], wait_seconds=10).state == "exited"
    assert jobs.run(command="printf 'x\\n'", wait_seconds=10).state == "exited"
    before = job_dirs(job_root)
    for command in ("true", ["sh", "-c", "echo"], "echoo hi", ["/usr/bin/envy"]):
        denied(jobs.run, "allow_commands", command=command)
    assert job_dirs(job_root) == before


def test_deny_wins_over_allow(job_root: Path) -> None:
    jobs = jobs_with(job_root, allow_commands=["*"], deny_commands=["curl"])
    denied(jobs.create, "deny_commands", command="curl http://example.invalid")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"notify_command": "curl http://example.invalid"}, "notify_command"),
        ({"on_output_match": {"pattern": "x", "notify_command": "curl x"}}, "on_output_match.notify_command"),
        ({"shell_wrapper": ["curl", "-c"]}, "shell_wrapper"),
    ],
)
def test_notify_commands_and_the_shell_wrapper_obey_the_command_rules(job_root: Path, args: dict, field: str) -> None:
    jobs = jobs_with(job_root, deny_commands=["curl"])
    assert denied(jobs.run, "deny_commands", command="echo", **args).details["field"] == field
    assert job_dirs(job_root) == []


def test_a_command_that_predates_the_rules_is_refused_at_start_and_restart(job_root: Path) -> None:
    created = Jobs(job_root).create(command="curl x").job_id
    ran = Jobs(job_root).run(command="echo first; true curl", wait_seconds=10).job_id
    strict = jobs_with(job_root, deny_commands=["curl", "*curl*"])
    denied(strict.start, "deny_commands", job_id=created)
    assert strict.snapshot(job_id=created).state == "created"
    denied(strict.restart, "deny_commands", job_id=ran)
    after = strict.snapshot(job_id=ran)
    assert (after.state, after.snapshot.stdout_tail) == ("exited", "first\n")


# --- pass_env ---------------------------------------------------------------------------------


def test_the_server_token_reaches_no_job_and_no_notify_command(
    job_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_JOBS_TOKEN", "tok-123")
    monkeypatch.setenv("OTHER_VAR", "kept")
    seen = Fifo(tmp_path / "notify-env")
    jobs = Jobs(job_root)
    result = jobs.run(
        command="env | grep AGENT_JOBS_TOKEN; echo other=$OTHER_VAR",
        notify_command=f"{{ env | grep AGENT_JOBS_TOKEN; echo done; }} > {seen}",
        wait_seconds=10,
    )
    assert result.final_snapshot.stdout_tail == "other=kept\n"
    assert seen.read() == b"done\n"


def test_pass_env_keeps_only_the_named_variables(job_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEP_ME", "1")
    monkeypatch.setenv("DROP_ME", "2")
    monkeypatch.setenv("AGENT_JOBS_TOKEN", "tok-123")
    jobs = jobs_with(job_root, pass_env=["PATH", "KEEP_*", "AGENT_JOBS_*"])
    result = jobs.run(command="echo k=$KEEP_ME d=$DROP_ME t=$AGENT_JOBS_TOKEN", env={"OWN": "x"}, wait_seconds=10)
    assert result.final_snapshot.stdout_tail == "k=1 d= t=\n"
    own = jobs.run(command="echo $OWN", env={"OWN": "given"}, wait_seconds=10)
    assert own.final_snapshot.stdout_tail == "given\n"  # a job's own env is not the server's


# --- read_only --------------------------------------------------------------------------------


def test_read_only_serves_reading_and_refuses_the_rest(job_root: Path) -> None:
    job_id = Jobs(job_root).run(command="echo hi", tags=["a"], wait_seconds=10).job_id
    ro = jobs_with(job_root, read_only=True)
    assert ro.snapshot(job_id=job_id).snapshot.stdout_tail == "hi\n"
    assert ro.wait(job_id=job_id).state == "exited"
    assert [j.job_id for j in ro.list(all=True).jobs] == [job_id]
    for call, args in (
        ("run", {"command": "true"}),
        ("create", {"command": "true"}),
        ("start", {"job_id": job_id}),
        ("restart", {"job_id": job_id}),
        ("kill", {"job_id": job_id}),
        ("delete", {"job_id": job_id}),
        ("tag", {"job_id": job_id, "tags": ["b"]}),
    ):
        assert denied(getattr(ro, call), "read_only", **args).details["operation"] == call
    assert job_dirs(job_root) == [job_id]
    assert ro.snapshot(job_id=job_id).tags == ["a"]


# --- max_running ------------------------------------------------------------------------------


def test_max_running_refuses_launches_past_the_cap(job_root: Path) -> None:
    jobs = jobs_with(job_root, max_running=1)
    first = jobs.run(command="sleep 30", wait_seconds=0).job_id
    created = jobs.create(command="echo later").job_id
    ended = Jobs(job_root).run(command="echo old", wait_seconds=10).job_id
    try:
        error = denied(jobs.run, "max_running", command="true")
        assert error.retryable and "1" in error.message
        denied(jobs.start, "max_running", job_id=created)
        denied(jobs.restart, "max_running", job_id=ended)
        assert sorted(job_dirs(job_root)) == sorted([first, created, ended])
        assert jobs.snapshot(job_id=created).state == "created"
        assert jobs.snapshot(job_id=ended).snapshot.stdout_tail == "old\n"
        # Restarting the one running job does not count that job against itself.
        assert jobs.restart(job_id=first, wait_seconds=0).state == "running"
    finally:
        jobs.kill(job_id=first, signal="SIGKILL", wait_seconds=10)
    assert jobs.start(job_id=created, wait_seconds=10).final_snapshot.stdout_tail == "later\n"


def test_concurrent_launches_never_overshoot_max_running(job_root: Path) -> None:
    jobs = jobs_with(job_root, max_running=2)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def launch() -> None:
        barrier.wait()
        try:
            outcomes.append(jobs.run(command="sleep 30", wait_seconds=0).state)
        except JobError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=launch) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert sorted(outcomes) == ["policy_denied"] * 4 + ["running"] * 2
        assert len(job_dirs(job_root)) == 2
    finally:
        kill_all(jobs)


# --- loading a policy file --------------------------------------------------------------------


def test_policy_loads_from_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "policy.toml"
    toml.write_text(
        'allowed_roots = ["~/src", "/srv/builds"]\n'
        'allow_commands = ["make", "pytest"]\n'
        'deny_commands = ["rm"]\n'
        'pass_env = ["PATH", "LANG"]\n'
        "max_running = 4\n"
    )
    policy = Policy.load(toml)
    assert policy.allowed_roots == ["~/src", "/srv/builds"]
    assert (policy.pass_env, policy.max_running, policy.read_only) == (["PATH", "LANG"], 4, False)
    as_json = tmp_path / "policy.json"
    as_json.write_text(json.dumps({"read_only": True, "deny_commands": ["curl"]}))
    assert Policy.load(as_json) == Policy(read_only=True, deny_commands=["curl"])


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("p.toml", "max_running = 0\n", "max_running"),
        ("p.toml", "read_only = 'yes'\n", "read_only"),
        ("p.toml", "allowed_roots = ['relative/dir']\n", "not an absolute path"),
        ("p.toml", "deny = ['rm']\n", "deny"),
        ("p.toml", "this is not toml", "not valid TOML"),
        ("p.json", "{not json", "not valid JSON"),
        ("p.json", "[]", "policy"),
    ],
)
def test_policy_load_names_the_problem(tmp_path: Path, name: str, text: str, says: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        Policy.load(path)
    assert str(path) in str(caught.value) and says in str(caught.value)


def test_policy_load_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        Policy.load(tmp_path / "absent.toml")


def test_the_default_policy_allows_everything(job_root: Path, outside: Path) -> None:
    jobs = Jobs(job_root)
    assert jobs.run(command="echo ok", cwd=str(outside), wait_seconds=10).final_snapshot.stdout_tail == "ok\n"
