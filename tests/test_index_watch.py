"""The root's watch: a read after jobs were added or removed learns which from the kernel's
events instead of listing the root, and stays exact whoever made the change and whenever.

Changes are made as a person, a restore or another server would: directories copied in,
renamed away, removed; the root itself replaced; more changes than the kernel's queue holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from jobcore import Jobs, index
from jobcore.index import _db, _sync, _watch
from jobcore.store import new_job_id
from jobcore.supervisor import fsio
from tests.conftest import REPO


def _ids(jobs: Jobs) -> set[str]:
    return {e.job_id for e in jobs.list(all=True, limit=0).jobs}


def _on_disk(root: Path) -> set[str]:
    return {n for n in os.listdir(root) if _sync._JOB_ID.fullmatch(n)}


def _copy_job(root: Path, job_id: str) -> str:
    """A job made by hand, as a restore would: a copy under a new id, renamed into place."""
    new_id = new_job_id()
    subprocess.run(["cp", "-a", str(root / job_id), str(root / f".{new_id}")], check=True)
    for name in (fsio.META, fsio.STATE):
        path = root / f".{new_id}" / name
        path.write_text(path.read_text().replace(job_id, new_id))
    os.rename(root / f".{new_id}", root / new_id)
    return new_id


def _covered(root: Path) -> bool:
    """Whether this process's next read learns the root's changes from its watch."""
    watch = _watch._WATCHES.get(str(root))
    with _db.open_index(root) as db:
        return watch is not None and watch.covered == _db.setting(db, _sync.GENERATION_KEY)


def _watch_from_now(jobs: Jobs) -> None:
    """Read the store until this process watches its root (the first read in a process adds no
    watch, the second adds it and brings the rows up to it)."""
    jobs.list(all=True)
    jobs.list(all=True)
    assert _covered(Path(jobs.root))


def _ended(jobs: Jobs, cwd: Path, count: int) -> list[str]:
    return [jobs.run(command="true", cwd=str(cwd), wait_seconds=30).job_id for _ in range(count)]


def test_changes_by_hand_right_after_our_own_add_are_seen_by_the_next_read(job_root: Path, tmp_path: Path) -> None:
    """Within the same clock tick of the root's mtime as our add: a job copied in, one removed."""
    jobs = Jobs(job_root)
    first, second = _ended(jobs, tmp_path, 2)
    _watch_from_now(jobs)
    ours = jobs.create(command="true", cwd=str(tmp_path)).job_id
    theirs = _copy_job(job_root, first)
    shutil.rmtree(job_root / second)
    assert _ids(jobs) == {first, ours, theirs} == _on_disk(job_root)
    assert _covered(job_root)  # learned from the events, not by listing the root
    again = jobs.create(command="true", cwd=str(tmp_path)).job_id
    moved = tmp_path / "moved-away"
    os.rename(job_root / first, moved)
    assert _ids(jobs) == {ours, theirs, again} == _on_disk(job_root)
    os.rename(moved, job_root / first)
    assert _ids(jobs) == {first, ours, theirs, again}


def test_a_job_restored_with_other_records_under_a_removed_name_is_read_again(job_root: Path, tmp_path: Path) -> None:
    jobs = Jobs(job_root)
    (job,) = _ended(jobs, tmp_path, 1)
    jobs.create(command="true", cwd=str(tmp_path), tags=["keep"])
    _watch_from_now(jobs)
    backup = tmp_path / "backup"
    subprocess.run(["cp", "-a", str(job_root / job), str(backup)], check=True)
    meta = fsio.read_json(str(backup / fsio.META))
    meta["tags"] = ["restored"]
    (backup / fsio.META).write_text(fsio.dumps(meta))
    shutil.rmtree(job_root / job)
    os.rename(backup, job_root / job)  # removed and back between two reads: two events, one name
    assert [e.job_id for e in jobs.list(all=True, tags=["restored"]).jobs] == [job]


def test_the_root_replaced_by_another_directory_is_listed(job_root: Path, tmp_path: Path) -> None:
    jobs = Jobs(job_root)
    (job,) = _ended(jobs, tmp_path, 1)
    _watch_from_now(jobs)
    os.rename(job_root, tmp_path / "old-root")
    job_root.mkdir(mode=0o700)
    subprocess.run(["cp", "-a", str(tmp_path / "old-root" / job), str(job_root / job)], check=True)
    other = _copy_job(job_root, job)
    assert _ids(jobs) == {job, other}
    shutil.rmtree(job_root / job)
    assert _ids(jobs) == {other}


def test_the_index_rebuilt_under_a_covered_watch_is_filled_from_the_root(job_root: Path, tmp_path: Path) -> None:
    jobs = Jobs(job_root)
    ids = set(_ended(jobs, tmp_path, 3))
    _watch_from_now(jobs)
    shutil.rmtree(index.index_path(job_root).parent)
    assert _ids(jobs) == ids


def test_more_changes_than_the_kernels_queue_holds_are_all_seen(job_root: Path, tmp_path: Path) -> None:
    """Events past the queue's end are lost: the overflow makes the next read list the root."""
    queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if queued > 100_000:
        pytest.skip(f"the kernel queues {queued} events: too many files to overflow it")
    jobs = Jobs(job_root)
    first, second = _ended(jobs, tmp_path, 2)
    _watch_from_now(jobs)
    for n in range(queued + 10):  # not jobs: only their events fill the queue
        os.close(os.open(job_root / f"x{n}", os.O_CREAT | os.O_WRONLY, 0o600))
    theirs = _copy_job(job_root, first)  # events lost
    shutil.rmtree(job_root / second)
    assert _ids(jobs) == {first, theirs} == _on_disk(job_root)


def _server(root: Path, cwd: Path) -> subprocess.Popen[str]:
    """A process using the engine as a server does: told on stdin to create a job or list them."""
    script = f"""
        import json, sys
        from jobcore import Jobs
        jobs = Jobs({str(root)!r})
        for line in sys.stdin:
            if line.strip() == "create":
                print(json.dumps(jobs.create(command="true", cwd={str(cwd)!r}).job_id), flush=True)
            else:
                print(json.dumps(sorted(e.job_id for e in jobs.list(all=True, limit=0).jobs)), flush=True)
    """
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)},
    )


def _ask(server: subprocess.Popen[str], request: str) -> Any:
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(request + "\n")
    server.stdin.flush()
    line = server.stdout.readline()
    assert line, "the server ended early"
    return json.loads(line)


def test_two_servers_on_one_store_see_the_same_jobs(job_root: Path, tmp_path: Path) -> None:
    """Each server watches the root: the other's adds, and changes by hand, are seen by both."""
    jobs = Jobs(job_root)
    (first,) = _ended(jobs, tmp_path, 1)
    servers = [_server(job_root, tmp_path) for _ in range(2)]
    try:
        for server in servers:
            assert _ask(server, "list") == [first]
        for step in range(6):
            made, other = servers[step % 2], servers[1 - step % 2]
            _ask(made, "create")
            if step % 3 == 0:
                _copy_job(job_root, first)
            if step % 3 == 1:
                shutil.rmtree(job_root / sorted(_on_disk(job_root) - {first})[0])
            expected = sorted(_on_disk(job_root))
            assert _ask(other, "list") == expected
            assert _ask(made, "list") == expected
    finally:
        for server in servers:
            assert server.stdin is not None
            server.stdin.close()
            assert server.wait(timeout=30) == 0
    assert _ids(jobs) == _on_disk(job_root)


def test_a_process_reading_a_store_once_adds_no_watch(job_root: Path, tmp_path: Path) -> None:
    """A one-off read (``agent-jobs ls``) neither watches the root nor loads inotify."""
    jobs = Jobs(job_root)
    _ended(jobs, tmp_path, 1)
    script = f"""
        import sys
        from pathlib import Path
        from jobcore import index
        from jobcore.store import Store
        page = index.read_page(Store(Path({str(job_root)!r})), index.Filter(None, None, [], None, 0))
        assert len(page.jobs) == 1, page
        assert not index._watch._WATCHES and "jobcore.inotify" not in sys.modules, sorted(sys.modules)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
