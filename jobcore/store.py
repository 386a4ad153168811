"""The job store: the root, job ids, one directory per job, and its state.

Everything in it is private to its owner (directories 0700, files 0600): a job's ``env`` values
and output are nobody else's business. See ``docs/security.md``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import JobError, invalid_input
from .slurm import jobfile as slurm_jobfile
from .slurm import liveness as slurm_liveness
from .supervisor import fsio, procs, records

_ID_INPUT = re.compile(r"[0-9a-f]{4,32}")
_FULL_ID = re.compile(r"[0-9a-f]{32}")
MAX_CANDIDATES = 20
DIR_MODE = 0o700
FILE_MODE = 0o600


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``--root`` > ``AGENT_JOBS_ROOT`` > ``$XDG_DATA_HOME/agent-jobs/jobs`` > ``~/.local/share/agent-jobs/jobs``."""
    if root:
        return Path(root).expanduser().absolute()
    if env_root := os.environ.get("AGENT_JOBS_ROOT"):
        return Path(env_root).expanduser().absolute()
    if xdg := os.environ.get("XDG_DATA_HOME"):
        return Path(xdg) / "agent-jobs" / "jobs"
    return Path.home() / ".local" / "share" / "agent-jobs" / "jobs"


def new_job_id() -> str:
    return secrets.token_hex(16)


class JobDir:
    """One job's directory and the files in it."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.root = root
        self.job_id = job_id
        self.path = root / job_id
        self._prefix = f"{self.path}{os.sep}"  # a launch names a dozen files: no Path object each
        self._lock_depth = 0

    def file(self, name: str) -> str:
        return self._prefix + name

    @property
    def stdout_path(self) -> str:
        return self.file(fsio.STDOUT)

    @property
    def stderr_path(self) -> str:
        return self.file(fsio.STDERR)

    @property
    def full_path(self) -> str:
        return self.file(fsio.FULL)

    def _gone(self) -> JobError:
        """The error for a job deleted under our feet (delete_job, the clean-up)."""
        return JobError("job_not_found", f"job {self.job_id} is gone", details={"job_id": self.job_id})

    def _read(self, name: str) -> dict[str, Any]:
        try:
            return fsio.read_json(self.file(name))
        except FileNotFoundError:
            raise self._gone() from None
        except ValueError as exc:  # not JSON: edited by hand, or cut short by an OS crash
            raise JobError(
                "io_error",
                f"job {self.job_id}: {name} is not a readable record: {exc}",
                details={"job_id": self.job_id, "file": name},
            ) from None

    def read_meta(self) -> dict[str, Any]:
        return self._read(fsio.META)

    def read_state(self) -> dict[str, Any]:
        return self._read(fsio.STATE)

    def write_state(self, status: str, **fields: Any) -> dict[str, Any]:
        """Write ``state.json``; an end record survives an OS crash once written."""
        record = records.state_record(self.job_id, status, **fields)
        durable = status in records.TERMINAL_STATES
        fsio.write_json_atomic(self.file(fsio.STATE), record, mode=FILE_MODE, durable=durable)
        return record

    def write_meta(self, meta: dict[str, Any], *, durable: bool = True) -> None:
        """Write ``meta.json``; the definition survives an OS crash once written, unless
        ``durable`` is False: a job launched at once, whose supervisor makes it durable."""
        fsio.write_json_atomic(self.file(fsio.META), meta, mode=FILE_MODE, durable=durable)

    def empty_logs(self) -> None:
        """Create the three logs empty, or empty them (a restart), each private to the owner."""
        for name in (fsio.STDOUT, fsio.STDERR, fsio.FULL):
            fd = os.open(self.file(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)  # a log made by an older version may be readable by others
            finally:
                os.close(fd)

    def remove(self) -> bool:
        """Delete the job's directory (the caller holds its lock); whether the job is gone.

        The directory is first renamed away, atomically: a launcher opening the job's lock file
        meanwhile would otherwise recreate it inside a half-deleted directory and keep it alive.
        """
        grave = self.root / f".deleted-{self.job_id}-{secrets.token_hex(4)}"
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        shutil.rmtree(grave, ignore_errors=True)
        return True

    @contextlib.contextmanager
    def lock(self, *, blocking: bool = True) -> Iterator[None]:
        """Exclusive lock among launchers, deleters and readers repairing state (not the
        supervisor). Re-entrant on this object: a second flock on another descriptor of the
        same file would wait for ourselves. Not blocking: raises ``BlockingIOError`` if held."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        try:
            fd = os.open(self.file(fsio.LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except FileNotFoundError:
            raise self._gone() from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
        finally:
            os.close(fd)

    def observed_state(self) -> dict[str, Any]:
        """``state.json``, with a lost supervisor noticed and recorded (a Slurm job's judged from Slurm)."""
        state = self.read_state()
        if records.status(state) not in slurm_liveness.OPEN_STATES:
            return state  # ended or not started: nothing to judge, no stat of slurm.json
        if slurm_jobfile.is_slurm(self.path):
            return slurm_liveness.observed(self, state)
        if _supervisor_lost(self, state):
            with self.lock():
                state = self.read_state()
                if _supervisor_lost(self, state):
                    state = self._record_lost_supervisor(state)
        return state

    def _record_lost_supervisor(self, state: dict[str, Any]) -> dict[str, Any]:
        pgid = state.get("pid")
        common = {
            "started_at": records.started_at(state),
            "pid": pgid,
            "supervisor_pid": state.get("supervisor_pid"),
            "reason": "supervisor_lost",
        }
        if pgid is not None and procs.group_alive(self.job_id, pgid):
            if state.get("reason") == "supervisor_lost":
                return state
            return self.write_state("running", **common)
        return self.write_state("failed", finished_at=fsio.now_rfc3339(), **common)


def _supervisor_lost(jd: JobDir, state: dict[str, Any]) -> bool:
    if records.status(state) != "running":
        return False
    spid = state.get("supervisor_pid")
    if spid is None or procs.is_supervisor_of(spid, str(jd.path)):
        return False
    # Lost and already recorded: only the group's end is left to notice.
    if state.get("reason") == "supervisor_lost":
        pgid = state.get("pid")
        return pgid is None or not procs.group_alive(jd.job_id, pgid)
    return True


def is_running(jd: JobDir, state: dict[str, Any]) -> bool:
    """Whether a job counts as running, judged without writing anything (no lock is taken):
    recorded ``running`` and its supervisor or its process group still alive. A Slurm job
    counts from its files alone, queued or running: its processes are on a node."""
    if slurm_jobfile.is_slurm(jd.path):
        return records.status(state) in slurm_liveness.OPEN_STATES
    if records.status(state) != "running":
        return False
    spid = state.get("supervisor_pid")
    if spid is not None and procs.is_supervisor_of(spid, str(jd.path)):
        return True
    pgid = state.get("pid")
    return pgid is not None and procs.group_alive(jd.job_id, pgid)


def check_job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not _ID_INPUT.fullmatch(job_id):
        raise invalid_input(f"job_id: {job_id!r} is not a job id (4 to 32 lowercase hex characters)", field="job_id")
    return job_id


def _make_private_dirs(path: Path) -> None:
    """``mkdir -p`` where every directory created is 0700 (``os.makedirs`` gives parents the umask's mode)."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass  # made meanwhile by another process


class Store:
    """The jobs under one root."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = resolve_root(root)

    def prepare(self) -> None:
        """Make the root ready and private, or raise ``io_error`` naming the root and the problem.

        A missing root is created 0700 (missing parents too); an existing one owned by us is
        tightened to 0700. A root we do not own, or one others may write to (they could plant
        or swap jobs), is refused rather than repaired.
        """
        root = self.root

        def refuse(problem: str) -> JobError:
            return JobError("io_error", f"job store {root}: {problem}", details={"root": str(root)})

        try:
            if not root.exists():
                _make_private_dirs(root)
            info = root.stat()
        except OSError as exc:
            raise refuse(f"cannot be created or used: {exc.strerror or exc}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise refuse("is not a directory")
        if info.st_uid != os.geteuid():
            raise refuse(f"is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise refuse(f"is writable by other users (mode {stat.S_IMODE(info.st_mode):04o}); make it 0700")
        try:
            if stat.S_IMODE(info.st_mode) != DIR_MODE:
                os.chmod(root, DIR_MODE)
            if not os.access(root, os.R_OK | os.W_OK | os.X_OK):
                raise refuse("is not readable, writable and searchable by this user")
        except OSError as exc:
            raise refuse(f"cannot be made private: {exc.strerror or exc}") from None

    def job_ids(self) -> list[str]:
        """Every job directory's id; a missing root has none."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return [n for n in names if _FULL_ID.fullmatch(n)]

    def open(self, job_id: object) -> JobDir:
        """The job with this full id or unique prefix."""
        job_id = check_job_id(job_id)
        if len(job_id) == 32:
            jd = JobDir(self.root, job_id)
            if os.path.isfile(jd.file(fsio.META)):
                return jd
            raise JobError("job_not_found", f"no job {job_id!r} under {self.root}", details={"job_id": job_id})
        matches = sorted(i for i in self.job_ids() if i.startswith(job_id))
        if not matches:
            raise JobError("job_not_found", f"no job matches {job_id!r} under {self.root}", details={"job_id": job_id})
        if len(matches) > 1:
            raise JobError(
                "ambiguous_job_id",
                f"{job_id!r} matches {len(matches)} jobs; give more characters",
                details={
                    "candidates": matches[:MAX_CANDIDATES],
                    "truncated": len(matches) > MAX_CANDIDATES,
                },
            )
        return JobDir(self.root, matches[0])
