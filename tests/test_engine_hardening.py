"""The engine refuses hostile or malformed input cleanly, keeps its store private and cleans up
only what is its own: real files, FIFOs and processes, through ``jobcore.Jobs``."""

from __future__ import annotations

import json
import os
import pwd
import stat
import threading
import time
from pathlib import Path

import pytest
from helpers import wait_exit

from jobcore import JobError, Jobs
from jobcore.inputs import MAX_BYTES_CAP
from jobcore.retention import candidates, delete_candidates

OLD = "2026-01-01T00:00:00.000Z"


@pytest.fixture
def jobs(job_root: Path) -> Jobs:
    return Jobs(job_root)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def refused(call, code: str = "invalid_input", **args) -> JobError:
    with pytest.raises(JobError) as caught:
        call(**args)
    assert caught.value.code == code, caught.value.message
    return caught.value


def no_job_created(root: Path) -> bool:
    return not root.exists() or not [p for p in root.iterdir() if not p.name.startswith(".")]


def age(root: Path, job_id: str, finished_at: str = OLD) -> None:
    path = root / job_id / "state.json"
    state = json.loads(path.read_text())
    state["finished_at"] = finished_at
    path.write_text(json.dumps(state))


# --- a private store ---------------------------------------------------------------------


def test_a_created_job_and_its_root_are_private(jobs: Jobs, job_root: Path, tmp_path: Path) -> None:
    stdin = tmp_path / "in.txt"
    stdin.write_text("data")
    job_id = jobs.create(command="cat", env={"TOKEN": "t"}, stdin_file=str(stdin)).job_id
    assert mode(job_root) == 0o700
    job_dir = job_root / job_id
    assert mode(job_dir) == 0o700
    entries = list(job_dir.iterdir())
    assert {p.name for p in entries} >= {"meta.json", "state.json", "env.json", "stdin.bin", "stdout.log"}
    for path in entries:
        assert mode(path) == 0o600, path.name


def test_a_run_jobs_files_are_private(jobs: Jobs, job_root: Path) -> None:
    """Every file a run leaves, the supervisor's included (events, counters, the end record)."""
    result = jobs.run(
        command="echo out; echo err >&2",
        env={"TOKEN": "t"},
        notify_file="finished.ndjson",
        on_output_match={"pattern": "out"},
        cwd=str(job_root.parent),
        wait_seconds=10,
    )
    assert result.state == "exited"
    job_dir = job_root / result.job_id
    wait_exit(json.loads((job_dir / "state.json").read_text())["supervisor_pid"])  # its last writes done
    assert mode(job_root) == mode(job_dir) == 0o700
    names = {p.name for p in job_dir.iterdir()}
    assert names >= {"meta.json", "state.json", "env.json", "full.log", "supervisor.ack", "triggers.json"}
    assert names >= {"completion_event.json", "notification_events.ndjson"}
    for path in job_dir.iterdir():
        assert mode(path) == 0o600, path.name
    assert mode(job_root.parent / "finished.ndjson") == 0o600


def test_a_restart_makes_older_logs_private(jobs: Jobs, job_root: Path) -> None:
    job_id = jobs.run(command="echo hi", wait_seconds=10).job_id
    log = job_root / job_id / "stdout.log"
    log.chmod(0o644)  # as written by an older version
    assert jobs.restart(job_id=job_id, wait_seconds=10).state == "exited"
    assert mode(log) == 0o600


def test_prepare_creates_a_missing_root_and_its_parents_private(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "jobs"
    Jobs(root).prepare()
    assert mode(root) == mode(root.parent) == mode(root.parent.parent) == 0o700


def test_prepare_tightens_a_root_of_ours(job_root: Path) -> None:
    job_root.mkdir(mode=0o755)
    job_root.chmod(0o755)
    Jobs(job_root).prepare()
    assert mode(job_root) == 0o700


@pytest.mark.parametrize("loose", [0o777, 0o770, 0o1777])
def test_prepare_refuses_a_root_others_may_write_to(job_root: Path, loose: int) -> None:
    job_root.mkdir()
    job_root.chmod(loose)
    error = refused(Jobs(job_root).prepare, "io_error")
    assert str(job_root) in error.message and "writable by other users" in error.message
    assert mode(job_root) == loose  # refused, not repaired


def test_prepare_refuses_a_root_owned_by_another_user(job_root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a directory away needs root")
    job_root.mkdir(mode=0o700)
    os.chown(job_root, pwd.getpwnam("nobody").pw_uid, -1)
    error = refused(Jobs(job_root).prepare, "io_error")
    assert str(job_root) in error.message and "owned by uid" in error.message


def test_prepare_refuses_a_root_that_is_not_a_usable_directory(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert "not a directory" in refused(Jobs(a_file).prepare, "io_error").message
    error = refused(Jobs("/proc/nope").prepare, "io_error")
    assert "/proc/nope" in error.message


def test_create_refuses_to_write_into_a_world_writable_root(jobs: Jobs, job_root: Path) -> None:
    job_root.mkdir()
    job_root.chmod(0o777)
    refused(jobs.create, "io_error", command="true")
    assert list(job_root.iterdir()) == []


# --- inputs that are not regular files ---------------------------------------------------


def call_unblocked(call, fifo: Path, **args) -> JobError | None:
    """Make the call in a thread; if it blocks on the FIFO, unblock it and fail the test."""
    outcome: list[JobError | None] = []

    def target() -> None:
        try:
            call(**args)
            outcome.append(None)
        except JobError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # lets the blocked open go on
        thread.join(10)
        pytest.fail(f"the call blocked on the FIFO {fifo}")
    return outcome[0]


@pytest.mark.parametrize("field", ["stdin_file", "env_files"])
def test_a_fifo_as_a_file_input_is_refused_at_once(jobs: Jobs, job_root: Path, tmp_path: Path, field: str) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    value = str(fifo) if field == "stdin_file" else [str(fifo)]
    error = call_unblocked(jobs.run, fifo, command="cat", **{field: value})
    assert error is not None and error.code == "invalid_input"
    assert field in error.message and "not a regular file" in error.message
    assert no_job_created(job_root)


@pytest.mark.parametrize("field", ["stdin_file", "env_files"])
def test_a_directory_as_a_file_input_is_refused(jobs: Jobs, job_root: Path, tmp_path: Path, field: str) -> None:
    value = str(tmp_path) if field == "stdin_file" else [str(tmp_path)]
    assert "not a regular file" in refused(jobs.create, command="cat", **{field: value}).message
    assert no_job_created(job_root)


# --- clean-up -------------------------------------------------------------------------------


def test_clean_up_spares_a_job_restarted_after_it_was_picked(
    jobs: Jobs, job_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGENT_JOBS_RETENTION", "off")  # only the turn below cleans
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    job_id = jobs.run(command=f"read x < {gate}", wait_seconds=0).job_id
    with open(gate, "w") as f:
        f.write("go\n")
    assert jobs.wait(job_id=job_id, wait_seconds=10).state == "exited"
    age(job_root, job_id)
    cutoff = time.time() - 3600
    picked = candidates(job_root, cutoff, time.monotonic() + 60)
    assert picked == [job_id]
    assert jobs.restart(job_id=job_id, wait_seconds=0).state == "running"
    assert delete_candidates(job_root, picked, cutoff) == []
    assert (job_root / job_id / "meta.json").exists()
    with open(gate, "w") as f:
        f.write("go\n")
    assert jobs.wait(job_id=job_id, wait_seconds=10).state == "exited"


def test_clean_up_touches_only_job_directories(jobs: Jobs, job_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobcore.retention import auto_clean

    monkeypatch.setenv("AGENT_JOBS_RETENTION", "1d")
    old_job = jobs.run(command="true", wait_seconds=10).job_id
    age(job_root, old_job)
    notes = job_root / "my-notes"
    notes.mkdir()
    (notes / "state.json").write_text((job_root / old_job / "state.json").read_text())
    assert auto_clean(job_root, force=True, budget_s=60) == [old_job]
    assert (notes / "state.json").exists()


# --- max_bytes is capped --------------------------------------------------------------------


def test_max_bytes_above_the_cap_is_lowered_and_said(job_root: Path) -> None:
    jobs = Jobs(job_root, budget_bytes=None)  # the budget per call would cut the windows first
    huge = 10**15
    result = jobs.run(command=f"head -c {3 * MAX_BYTES_CAP} /dev/zero | tr '\\0' x", max_bytes=huge, wait_seconds=10)
    assert result.state == "exited"
    assert result.lowered_to == {"max_bytes": MAX_BYTES_CAP}
    assert result.final_snapshot.stdout_included_bytes == MAX_BYTES_CAP
    snap = jobs.snapshot(job_id=result.job_id, max_bytes=huge, tail_lines=0)
    assert (snap.lowered_to, snap.snapshot.stdout_included_bytes) == ({"max_bytes": MAX_BYTES_CAP}, MAX_BYTES_CAP)
    paged = jobs.snapshot(job_id=result.job_id, max_bytes=huge, stdout_offset=0)
    assert paged.snapshot.stdout_range == (0, MAX_BYTES_CAP)
    waited = jobs.wait(job_id=result.job_id, max_bytes=huge)
    assert waited.lowered_to == {"max_bytes": MAX_BYTES_CAP}
    assert waited.final_snapshot.stdout_included_bytes == MAX_BYTES_CAP
    plain = jobs.snapshot(job_id=result.job_id, tail_lines=0)
    assert plain.lowered_to is None and "lowered_to" not in plain.to_dict()
    assert plain.snapshot.stdout_included_bytes == 65536
    exact = jobs.snapshot(job_id=result.job_id, tail_lines=0, max_bytes=MAX_BYTES_CAP)
    assert exact.lowered_to is None


# --- relative paths -------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_jobs_cwd(
    jobs: Jobs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    for folder, word in ((work, "job"), (elsewhere, "server")):
        folder.mkdir()
        (folder / "vars.env").write_text(f"WHERE={word}\n")
        (folder / "in.txt").write_text(f"{word}-stdin\n")
    monkeypatch.chdir(elsewhere)  # the server's cwd
    result = jobs.run(
        command='echo "$WHERE"; cat',
        cwd=str(work),
        env_files=["vars.env"],
        stdin_file="in.txt",
        notify_file="events.ndjson",
        wait_seconds=10,
    )
    assert result.final_snapshot.stdout_tail == "job\njob-stdin\n"
    meta = json.loads(Path(jobs.root, result.job_id, "meta.json").read_text())
    assert meta["env_files"] == [str(work / "vars.env")]
    assert meta["notification"]["notify_file"] == str(work / "events.ndjson")
    assert not (elsewhere / "events.ndjson").exists()


# --- secrets stay out of errors -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        {"env": {"DB_PASSWORD": "s3cret", "9BAD": "x"}},
        {"env": {"DB_PASSWORD": "s3cret", "N": 5}},
        {"env": ["DB_PASSWORD=s3cret"]},
        {"stdin": {"password": "s3cret"}},
        {"stdin": "s3cret\0"},
        {"stdin": "s3cret\ud800"},
        {"env": {"DB_PASSWORD": "s3cret\0"}},
    ],
)
def test_no_env_or_stdin_value_is_echoed_in_an_error(jobs: Jobs, job_root: Path, args: dict) -> None:
    error = refused(jobs.run, command="true", **args)
    assert "s3cret" not in error.message and "s3cret" not in json.dumps(error.details)
    assert error.details["field"].split(".")[0] in ("env", "stdin")
    assert no_job_created(job_root)


def test_an_env_key_is_named_in_the_error(jobs: Jobs) -> None:
    error = refused(jobs.create, command="true", env={"DB_PASSWORD": "s3cret", "9BAD": "x"})
    assert "'9BAD'" in error.message


# --- huge numbers and bad strings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "args", "field"),
    [
        ("run", {"command": "true", "timeout": 1e308}, "timeout"),
        ("run", {"command": "true", "kill_after": 1e306}, "kill_after"),
        ("run", {"command": "true", "wait_seconds": 1e308}, "wait_seconds"),
        ("create", {"command": "true", "timeout": 10**400}, "timeout"),
        ("kill", {"job_id": "abcd", "wait_seconds": 1e300}, "wait_seconds"),
        ("run", {"command": "true", "stdin": "a\ud800b"}, "stdin"),
        ("run", {"command": "true\udfff"}, "command"),
        ("run", {"command": ["echo", "\ud800"]}, "command.1"),
        ("create", {"command": "true", "cwd": "/tmp/\ud800"}, "cwd"),
        ("create", {"command": "true", "env": {"A\ud800": "x"}}, "env"),
        ("create", {"command": "true", "tags": ["\udc80"]}, "tags.0"),
        ("create", {"command": "true", "on_output_match": {"pattern": "\ud800"}}, "on_output_match.pattern"),
        ("list", {"cwd": "\ud800"}, "cwd"),
        ("delete", {"finished_older_than": "7\ud800d"}, "finished_older_than"),
        ("snapshot", {"job_id": "ab\ud800cd"}, "job_id"),
    ],
)
def test_huge_numbers_and_lone_surrogates_are_refused_naming_the_field(
    jobs: Jobs, job_root: Path, call: str, args: dict, field: str
) -> None:
    error = refused(getattr(jobs, call), **args)
    assert error.message.startswith(field), error.message
    error.message.encode("ascii")  # writable to any log or terminal
    assert no_job_created(job_root)


# --- null is not a value --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "args", "field"),
    [
        ("list", {"cwd": None}, "cwd"),
        ("list", {"state": None}, "state"),
        ("run", {"command": "true", "cwd": None}, "cwd"),
        ("run", {"command": "true", "stdin": None}, "stdin"),
        ("run", {"command": "true", "wait_seconds": None}, "wait_seconds"),
        ("create", {"command": "true", "env": {"A": None}}, "env.A"),
        ("create", {"command": "true", "on_output_match": {"pattern": "x", "notify_file": None}}, "on_output_match"),
        ("create", {"command": "true", "shell_wrapper": None}, "shell_wrapper"),
        ("create", {"command": None}, "command"),
        ("snapshot", {"job_id": "abcd", "stdout_offset": None}, "stdout_offset"),
        ("wait", {"job_id": "abcd", "wait_seconds": None}, "wait_seconds"),
        ("kill", {"job_id": "abcd", "signal": None}, "signal"),
        ("delete", {"job_id": None, "finished_older_than": "1d"}, "job_id"),
        ("start", {"job_id": "abcd", "max_bytes": None}, "max_bytes"),
    ],
)
def test_an_explicit_null_is_refused(jobs: Jobs, job_root: Path, call: str, args: dict, field: str) -> None:
    error = refused(getattr(jobs, call), **args)
    assert error.message.startswith(field) and "null is not allowed; leave the field out" in error.message
    assert no_job_created(job_root)


def test_validation_comes_before_the_job_lookup(jobs: Jobs) -> None:
    error = refused(jobs.start, job_id="abcdef12", tail_lines=-1)
    assert error.message.startswith("tail_lines")
    refused(jobs.restart, job_id="abcdef12", wait_seconds=None)


# --- ASCII only where a number, a signal or an id is read -----------------------------------


def test_non_ascii_digits_are_not_an_age(jobs: Jobs, job_root: Path) -> None:
    job_id = jobs.run(command="true", wait_seconds=10).job_id
    age(job_root, job_id)
    for text in ("\u0667d", "\uff17d", "1\u0663h"):
        refused(jobs.delete, finished_older_than=text)
    assert refused(jobs.delete, finished_older_than="9" * 5000 + "d").message.startswith("finished_older_than")
    assert jobs.store.job_ids() == [job_id]


@pytest.mark.parametrize("name", ["\u017figterm", "\u017fIGKILL", "sig\u0131nt"])
def test_a_signal_name_is_ascii(jobs: Jobs, name: str) -> None:
    job_id = jobs.run(command="sleep 30", wait_seconds=0).job_id
    try:
        assert "unsupported signal" in refused(jobs.kill, job_id=job_id, signal=name).message
        assert jobs.snapshot(job_id=job_id).state == "running"
    finally:
        jobs.kill(job_id=job_id, signal="sigkill")


def test_a_job_id_is_ascii_hex(jobs: Jobs) -> None:
    job_id = jobs.create(command="true").job_id
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else chr(ord(c) - 0x30 + 0xFF10) for c in job_id[:6])
    assert "not a job id" in refused(jobs.snapshot, job_id=wide).message


@pytest.mark.parametrize("name", ["meta.json", "state.json"])
def test_a_record_cut_short_is_an_io_error_naming_the_file(jobs: Jobs, job_root: Path, name: str) -> None:
    """An empty record is what an OS crash can leave of a file written without waiting for the disk."""
    job_id = jobs.run(command="true", wait_seconds=10).job_id
    (job_root / job_id / name).write_text("")
    for call in (jobs.snapshot, jobs.restart):
        with pytest.raises(JobError) as caught:
            call(job_id=job_id)
        assert caught.value.code == "io_error"
        assert name in caught.value.message and caught.value.details == {"job_id": job_id, "file": name}
