"""The store's index: list_jobs through it agrees with the files, whatever changed them.

Records are changed here as a person or another tool would: rewritten, edited in place,
restored from a copy, removed. ``SETTLE_NS`` is set to 0 where a test needs rows the index
trusts at once (otherwise a file changed within the last second is re-read on every read).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from jobcore import Jobs, index
from jobcore.index import _listing
from jobcore.retention import auto_clean
from jobcore.store import Store, new_job_id
from jobcore.supervisor import fsio
from tests.conftest import REPO
from tests.helpers import Fifo, wait_exit


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are trusted as soon as they are read, so a stale one would stay stale."""
    monkeypatch.setattr(index._files, "SETTLE_NS", 0)


@pytest.fixture
def listing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads list the root, as on a filesystem no watch can be trusted on (no inotify watch)."""
    monkeypatch.setattr(index._watch, "WATCH_ROOTS", False)


@pytest.fixture(params=["watched", "listed"])
def either(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a read learns the root changed: the kernel's events, or listing the root."""
    if request.param == "listed":
        monkeypatch.setattr(index._watch, "WATCH_ROOTS", False)
    return str(request.param)


def _listed(jobs: Jobs, **args: Any) -> list[dict[str, Any]]:
    # backend and slurm come from a Slurm job's own file, not from the index: not compared here.
    return [e.model_dump(exclude={"backend", "slurm"}) for e in jobs.list(all=True, limit=0, **args).jobs]


def _scanned(root: Path) -> list[dict[str, Any]]:
    page = index.scan_page(Store(root), index.Filter(scope=None, state=None, tags=[], after=None, limit=0))
    return [
        {
            "job_id": j.job_id,
            "state": j.state,
            "command": j.command,
            "cwd": j.cwd,
            "tags": j.tags,
            "exit_code": j.exit_code,
            "reason": j.reason,
            "created_at": j.created_at,
            "started_at": j.started_at,
            "finished_at": j.finished_at,
            "updated_at": j.updated_at,
        }
        for j in page.jobs
    ]


def _assert_agree(jobs: Jobs) -> None:
    assert _listed(jobs) == _scanned(Path(jobs.root))


def _ended(jobs: Jobs, cwd: Path, count: int, tags: list[str] | None = None) -> list[str]:
    ids = []
    for _ in range(count):
        job = jobs.run(command="true", cwd=str(cwd), tags=tags or [], wait_seconds=30)
        assert job.state == "exited"
        ids.append(job.job_id)
    return ids


def _rewrite(path: Path, change: dict[str, Any], *, in_place: bool = False) -> None:
    """Change a record as a person would: a new file renamed over it, or the same file rewritten."""
    record = fsio.read_json(str(path))
    for key, value in change.items():
        record[key] = value
    text = fsio.dumps(record)
    if in_place:
        with open(path, "r+") as f:
            f.write(text)
            f.truncate()
    else:
        tmp = path.with_name(path.name + ".new")
        tmp.write_text(text)
        os.rename(tmp, path)


def test_the_index_is_private_and_agrees_with_the_files(job_root: Path, tmp_path: Path) -> None:
    jobs = Jobs(job_root)
    _ended(jobs, tmp_path, 3, tags=["a.b"])
    jobs.create(command="sleep 1", cwd=str(tmp_path))
    _assert_agree(jobs)
    path = index.index_path(job_root)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_reading_a_missing_or_empty_root_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "none"
    assert Jobs(root).list(all=True).jobs == []
    assert not root.exists()
    root.mkdir()
    assert Jobs(root).list(all=True).jobs == []
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("damage", ["removed", "garbage", "truncated"])
def test_a_missing_or_corrupt_index_is_rebuilt_from_the_files(job_root: Path, tmp_path: Path, damage: str) -> None:
    jobs = Jobs(job_root)
    _ended(jobs, tmp_path, 3)
    before = _listed(jobs)
    path = index.index_path(job_root)
    if damage == "removed":
        shutil.rmtree(path.parent)
    elif damage == "garbage":
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.write_bytes(b"this is not a database" * 100)
    else:
        with open(path, "r+b") as f:
            f.truncate(100)
    assert _listed(jobs) == before
    assert _listed(jobs) == before  # the index rebuilt, not just bypassed
    assert index.index_path(job_root).stat().st_size > 100


def test_records_edited_by_hand_are_seen_by_the_next_read(job_root: Path, tmp_path: Path, trusted: None) -> None:
    jobs = Jobs(job_root)
    first, second = _ended(jobs, tmp_path, 2, tags=["old"])
    _assert_agree(jobs)
    _rewrite(job_root / first / fsio.META, {"tags": ["new.one"]}, in_place=True)
    _rewrite(job_root / second / fsio.STATE, {"finished_at": "2020-01-01T00:00:00.000Z"})
    listed = {e["job_id"]: e for e in _listed(jobs)}
    assert listed[first]["tags"] == ["new.one"]
    assert listed[second]["finished_at"] == "2020-01-01T00:00:00.000Z"
    assert [e.job_id for e in jobs.list(all=True, tags=["new.*"]).jobs] == [first]
    assert [e.job_id for e in jobs.list(all=True, tags=["old"]).jobs] == [second]
    _assert_agree(jobs)


def test_a_record_rewritten_in_place_with_its_old_mtime_is_seen(job_root: Path, tmp_path: Path, trusted: None) -> None:
    """As ``cp -p`` or ``rsync -t`` restoring a backup over it: same inode, same size, old mtime."""
    jobs = Jobs(job_root)
    (job_id,) = _ended(jobs, tmp_path, 1, tags=["aa"])
    meta = job_root / job_id / fsio.META
    assert jobs.list(all=True).jobs[0].tags == ["aa"]
    before = meta.stat()
    text = meta.read_bytes()
    with open(meta, "r+b") as f:
        f.write(text.replace(b'"aa"', b'"bb"'))
    os.utime(meta, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = meta.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert jobs.list(all=True).jobs[0].tags == ["bb"]


def test_a_row_not_on_any_page_is_checked_within_a_sweep(
    job_root: Path, tmp_path: Path, trusted: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ended job's record edited by hand, matched by no page: filters see it within
    ceil(jobs / SWEEP_ROWS) reads."""
    monkeypatch.setattr(index._sync, "SWEEP_ROWS", 2)
    jobs = Jobs(job_root)
    ids = _ended(jobs, tmp_path, 6)
    _assert_agree(jobs)
    _rewrite(job_root / ids[0] / fsio.META, {"tags": ["found"]})
    reads = 0
    while not jobs.list(all=True, tags=["found"]).jobs:
        reads += 1
        assert reads <= 3, "the sweep did not reach the edited record"
    _assert_agree(jobs)


def test_the_sweep_goes_on_when_every_read_lists_the_root(
    job_root: Path, tmp_path: Path, trusted: None, listing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store changing before every read (each read lists the root) still has every row checked."""
    monkeypatch.setattr(index._sync, "SWEEP_ROWS", 0)
    monkeypatch.setattr(index._sync, "SWEEP_ROWS_LISTED", 2)
    jobs = Jobs(job_root)
    ids = _ended(jobs, tmp_path, 6)
    _assert_agree(jobs)
    _rewrite(job_root / ids[0] / fsio.META, {"tags": ["found"]})
    reads = 0
    while True:
        (job_root / f"not-a-job-{reads}").mkdir()  # the root changes: this read lists it
        if jobs.list(all=True, tags=["found"]).jobs:
            break
        reads += 1
        assert reads <= 3, "the sweep did not reach the edited record"


def test_tag_job_is_seen_by_a_filter_at_once(
    job_root: Path, tmp_path: Path, trusted: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index._sync, "SWEEP_ROWS", 0)  # no sweep: the verb's own update alone
    monkeypatch.setattr(index._sync, "SWEEP_ROWS_LISTED", 0)
    jobs = Jobs(job_root)
    ids = _ended(jobs, tmp_path, 4)
    jobs.list(all=True)
    jobs.tag(job_id=ids[0], tags=["picked"])
    assert [e.job_id for e in jobs.list(all=True, tags=["picked"]).jobs] == [ids[0]]


def test_a_restarted_job_is_seen_by_a_state_filter_at_once(
    job_root: Path, tmp_path: Path, trusted: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index._sync, "SWEEP_ROWS", 0)  # no sweep: the verb's own update alone
    monkeypatch.setattr(index._sync, "SWEEP_ROWS_LISTED", 0)
    jobs = Jobs(job_root)
    started, release = Fifo(tmp_path / "started"), Fifo(tmp_path / "release")
    job = jobs.run(command=f"echo x > {started}; read x < {release}", cwd=str(tmp_path), wait_seconds=0)
    started.read()
    release.write()
    assert jobs.wait(job_id=job.job_id, wait_seconds=30).state == "exited"
    assert jobs.list(all=True, state="running").jobs == []
    jobs.restart(job_id=job.job_id, wait_seconds=0)
    started.read()
    assert [e.job_id for e in jobs.list(all=True, state="running").jobs] == [job.job_id]
    release.write()
    assert jobs.wait(job_id=job.job_id, wait_seconds=30).state == "exited"
    assert [e.job_id for e in jobs.list(all=True, state="exited").jobs] == [job.job_id]


def test_jobs_removed_or_restored_by_hand_are_seen(job_root: Path, tmp_path: Path, trusted: None, either: str) -> None:
    jobs = Jobs(job_root)
    ids = _ended(jobs, tmp_path, 3)
    _assert_agree(jobs)
    backup = tmp_path / "backup"
    subprocess.run(["cp", "-a", str(job_root / ids[1]), str(backup)], check=True)
    shutil.rmtree(job_root / ids[1])
    assert ids[1] not in {e["job_id"] for e in _listed(jobs)}
    _assert_agree(jobs)
    subprocess.run(["cp", "-a", str(backup), str(job_root / ids[1])], check=True)
    assert ids[1] in {e["job_id"] for e in _listed(jobs)}
    _assert_agree(jobs)


def _copy_job(root: Path, job_id: str) -> str:
    """A new job made by hand, as a restore from another store would: a copy under a new id."""
    new_id = new_job_id()
    subprocess.run(["cp", "-a", str(root / job_id), str(root / f".{new_id}")], check=True)
    for name in (fsio.META, fsio.STATE):
        path = root / f".{new_id}" / name
        path.write_text(path.read_text().replace(job_id, new_id))
    os.rename(root / f".{new_id}", root / new_id)
    return new_id


def _listing_is_saved(root: Path) -> bool:
    with index._db.open_index(root) as db:
        return _listing.load(db, root).names is not None


@pytest.mark.parametrize(
    ("block", "window", "steps"), [(_listing.BLOCK, _listing.WINDOW, _listing.MAX_STEPS), (3, 8, 2), (5, 64, 1000)]
)
def test_comparing_listings_finds_exactly_the_names_added_and_removed(
    block: int, window: int, steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the orders: the same but for scattered changes, names moved, or shuffled; names that
    are prefixes of others. Small blocks, windows and step counts take every path of the walk."""
    monkeypatch.setattr(_listing, "BLOCK", block)
    monkeypatch.setattr(_listing, "WINDOW", window)
    monkeypatch.setattr(_listing, "MAX_STEPS", steps)
    rng = random.Random(block)
    for _ in range(600):
        pool = [f"{rng.randrange(16 ** rng.randint(1, 4)):x}" for _ in range(rng.randint(0, 40))]
        before = list(dict.fromkeys(pool))
        after = [n for n in before if rng.random() > 0.15]
        # Names as os.listdir gives them: any byte but "/" and NUL, undecodable ones escaped.
        for name in [*pool[: rng.randint(0, 3)], "x" * rng.randint(1, 3), "a\nb", os.fsdecode(b"caf\xe9")]:
            if name not in after:
                after.insert(rng.randint(0, len(after)), name)
        if rng.random() < 0.1:
            rng.shuffle(after)
        added, removed = _listing.changes(_listing.joined(before), _listing.joined(after))
        assert {os.fsdecode(n) for n in added} == set(after) - set(before), (before, after)
        assert {os.fsdecode(n) for n in removed} == set(before) - set(after), (before, after)


def test_jobs_added_and_removed_by_hand_between_reads_are_seen(job_root: Path, tmp_path: Path, either: str) -> None:
    """Each read learns every change: from the events, or by comparing the root with the listing
    the last read saved."""
    jobs = Jobs(job_root)
    ids = _ended(jobs, tmp_path, 4)
    _assert_agree(jobs)
    rng = random.Random(1)
    removed: dict[str, Path] = {}
    for step in range(30):
        assert _listing_is_saved(job_root) or either == "watched"
        action = rng.choice(["add", "add", "remove", "restore"])
        if action == "add":
            ids.append(_copy_job(job_root, rng.choice(ids)))
        elif action == "remove" and len(ids) > 1:
            gone = ids.pop(rng.randrange(len(ids)))
            removed[gone] = tmp_path / f"backup-{step}"
            shutil.move(job_root / gone, removed[gone])
        elif action == "restore" and removed:
            back = rng.choice(sorted(removed))
            shutil.move(removed.pop(back), job_root / back)
            ids.append(back)
        assert sorted(e["job_id"] for e in _listed(jobs)) == sorted(ids)
        _assert_agree(jobs)


def test_a_job_added_by_hand_right_after_our_own_add_is_seen(job_root: Path, tmp_path: Path, either: str) -> None:
    """Our add and one behind our back within the same clock tick of the root's mtime."""
    jobs = Jobs(job_root)
    (first,) = _ended(jobs, tmp_path, 1)
    jobs.list(all=True)
    ours = jobs.create(command="true", cwd=str(tmp_path)).job_id
    theirs = _copy_job(job_root, first)
    assert {ours, theirs} <= {e["job_id"] for e in _listed(jobs)}
    jobs.list(all=True)
    behind = _copy_job(job_root, first)
    assert behind in {e["job_id"] for e in _listed(jobs)}
    _assert_agree(jobs)


def test_a_job_deleted_then_restored_by_hand_is_seen(job_root: Path, tmp_path: Path, either: str) -> None:
    """delete_job drops the row at once while the saved listing still names the job: the listing
    must not be trusted when the job comes back under the same name."""
    jobs = Jobs(job_root)
    ids = _ended(jobs, tmp_path, 3)
    _assert_agree(jobs)
    assert _listing_is_saved(job_root) or either == "watched"
    backup = tmp_path / "backup"
    subprocess.run(["cp", "-a", str(job_root / ids[1]), str(backup)], check=True)
    assert jobs.delete(job_id=ids[1]).jobs[0].action == "deleted"
    subprocess.run(["cp", "-a", str(backup), str(job_root / ids[1])], check=True)
    assert ids[1] in {e["job_id"] for e in _listed(jobs)}
    _assert_agree(jobs)


def test_a_listing_is_not_saved_over_a_row_removed_since_it_was_loaded(
    job_root: Path, tmp_path: Path, listing: None
) -> None:
    """Another process removing a row between our load and our write makes our listing unusable."""
    jobs = Jobs(job_root)
    ids = _ended(jobs, tmp_path, 2)
    jobs.list(all=True)
    theirs = index._db._connect(index.index_path(job_root))  # as another process's connection
    with index._db.open_index(job_root) as ours:
        seen = _listing.load(ours, job_root)
        assert seen.names is not None
        with index._db.writing(theirs):
            index._sync.delete_rows(theirs, [ids[0]])
        theirs.close()
        with index._db.writing(ours):
            assert not _listing.still(ours, seen)
        assert _listing.load(ours, job_root).names is None


@pytest.mark.parametrize("damage", ["removed", "garbage", "other token", "truncated"])
def test_a_lost_or_damaged_listing_costs_only_a_compare_with_the_rows(
    job_root: Path, tmp_path: Path, damage: str, listing: None
) -> None:
    jobs = Jobs(job_root)
    ids = _ended(jobs, tmp_path, 3)
    _assert_agree(jobs)
    path = index.index_path(job_root).parent / _listing.LISTING_FILE
    text = path.read_bytes()
    if damage == "removed":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage/" * 10)
    elif damage == "other token":
        path.write_bytes(b"0123456789abcdef\n" + text.partition(b"\n")[2])
    else:
        path.write_bytes(text[: len(text) // 2])
    _listing._KEPT.clear()  # read from the file, as another process would
    shutil.rmtree(job_root / ids[0])
    ids.append(_copy_job(job_root, ids[1]))
    assert sorted(e["job_id"] for e in _listed(jobs)) == sorted(ids[1:])
    _assert_agree(jobs)
    assert _listing_is_saved(job_root)


def test_the_supervisors_state_changes_are_seen(job_root: Path, tmp_path: Path, trusted: None) -> None:
    jobs = Jobs(job_root)
    started, release = Fifo(tmp_path / "started"), Fifo(tmp_path / "release")
    job = jobs.run(command=f"echo x > {started}; read x < {release}", cwd=str(tmp_path), wait_seconds=0)
    started.read()
    assert [e.state for e in jobs.list(all=True).jobs] == ["running"]
    assert [e.job_id for e in jobs.list(all=True, state="running").jobs] == [job.job_id]
    release.write()
    assert jobs.wait(job_id=job.job_id, wait_seconds=30).state == "exited"
    assert [e.state for e in jobs.list(all=True).jobs] == ["exited"]
    assert jobs.list(all=True, state="running").jobs == []
    _assert_agree(jobs)


def test_delete_by_age_judges_from_the_files_not_the_index(job_root: Path, tmp_path: Path, trusted: None) -> None:
    jobs = Jobs(job_root)
    old, recent = _ended(jobs, tmp_path, 2)
    jobs.list(all=True)  # the rows hold the real end times: both recent
    _rewrite(job_root / old / fsio.STATE, {"finished_at": "2020-01-01T00:00:00.000Z"})
    outcome = jobs.delete(finished_older_than="1d")
    assert {e.job_id: e.action for e in outcome.jobs} == {old: "deleted", recent: "skipped"}
    assert [e["job_id"] for e in _listed(jobs)] == [recent]
    _assert_agree(jobs)


def test_retention_judges_from_the_files_not_the_index(
    job_root: Path, tmp_path: Path, trusted: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_JOBS_RETENTION", "1d")
    jobs = Jobs(job_root)
    old, recent = _ended(jobs, tmp_path, 2)
    jobs.list(all=True)
    _rewrite(job_root / old / fsio.STATE, {"finished_at": "2020-01-01T00:00:00.000Z"})
    assert auto_clean(job_root, force=True, budget_s=30.0) == [old]
    assert [e["job_id"] for e in _listed(jobs)] == [recent]
    _assert_agree(jobs)


def test_a_process_keeps_one_connection_per_store_and_few_stores(job_root: Path, tmp_path: Path) -> None:
    """Reads reuse the connection (no checkpoint and -wal file made again per read), up to MAX_OPEN stores."""
    jobs = Jobs(job_root)
    _ended(jobs, tmp_path, 1)
    jobs.list(all=True)
    kept = index._db._OPEN[str(index.index_path(job_root))]
    jobs.list(all=True)
    assert index._db._OPEN[str(index.index_path(job_root))] is kept
    assert Path(f"{index.index_path(job_root)}-wal").exists()  # not checkpointed away between reads
    for n in range(index._db.MAX_OPEN + 2):
        other = Jobs(tmp_path / f"store-{n}")
        _ended(other, tmp_path, 1)
        assert len(other.list(all=True).jobs) == 1
    assert len(index._db._OPEN) <= index._db.MAX_OPEN
    assert kept.closed and len(_listed(jobs)) == 1  # dropped, and opened again when needed


def test_threads_and_a_forked_child_each_read_the_index_safely(job_root: Path, tmp_path: Path) -> None:
    jobs = Jobs(job_root)
    ids = _ended(jobs, tmp_path, 3)
    expected = _listed(jobs)
    results: list[list[dict[str, Any]]] = []

    def read() -> None:
        for _ in range(5):
            results.append(_listed(jobs))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 20
    left = [e for e in expected if e["job_id"] != ids[0]]
    pid = os.fork()
    if pid == 0:  # the child: its own connection, never the parent's
        code = 1
        try:
            shutil.rmtree(job_root / ids[0])
            code = 0 if _listed(jobs) == left else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _listed(jobs) == left
    _assert_agree(jobs)


def _engine_process(root: Path, cwd: Path, script: str) -> subprocess.Popen[str]:
    """A process using the engine as a server does, told to begin (and its ``name``) by a line on its stdin."""
    prelude = f"""
        import sys
        from jobcore import Jobs
        jobs = Jobs({str(root)!r})
        cwd = {str(cwd)!r}
        name = sys.stdin.readline().strip()
    """
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(prelude) + textwrap.dedent(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)},
    )


def _settle(jobs: Jobs) -> None:
    """Wait for every job still running to end, so the files stop changing."""
    for entry in _scanned(Path(jobs.root)):
        if entry["state"] == "running":
            jobs.wait(job_id=entry["job_id"], wait_seconds=30)


def test_a_server_killed_mid_launch_leaves_index_and_files_agreeing(job_root: Path, tmp_path: Path) -> None:
    jobs = Jobs(job_root)
    _ended(jobs, tmp_path, 2)
    jobs.list(all=True)
    proc = _engine_process(
        job_root,
        tmp_path,
        """
        n = 0
        while True:
            jobs.run(command="true", cwd=cwd, tags=[f"n.{n}"], wait_seconds=0)
            jobs.list(all=True)
            n += 1
            print(n, flush=True)
        """,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    for _ in range(5):
        assert proc.stdout.readline(), "the launching process ended early"
    proc.send_signal(signal.SIGKILL)
    wait_exit(proc.pid)
    proc.wait()
    _settle(jobs)
    _assert_agree(jobs)
    assert len(_listed(jobs)) >= 7


def test_two_servers_writing_at_once_leave_index_and_files_agreeing(job_root: Path, tmp_path: Path) -> None:
    jobs = Jobs(job_root)
    _ended(jobs, tmp_path, 2)
    script = """
        mine = []
        for n in range(8):
            mine.append(jobs.run(command="true", cwd=cwd, tags=[name, f"n.{n}"], wait_seconds=30).job_id)
            jobs.list(all=True)
            jobs.tag(job_id=mine[0], tags=[name, "retagged"])
            jobs.list(all=True, tags=["n.*"])
        jobs.delete(job_id=mine[1])
        jobs.list(all=True)
    """
    procs = [_engine_process(job_root, tmp_path, script) for _ in range(2)]
    for name, proc in zip(("alpha", "beta"), procs, strict=True):
        assert proc.stdin is not None
        proc.stdin.write(name + "\n")
        proc.stdin.flush()
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    _settle(jobs)
    _assert_agree(jobs)
    assert len(_listed(jobs)) == 2 + 2 * 7
    assert len(jobs.list(all=True, tags=["retagged"]).jobs) == 2
