"""Idempotent creation: a second create or run with the same ``idempotency_key`` gets the first one's job.

Each key has a marker file in the store's root, ``.keys/<sha256 of the key>``, holding the job id
and a digest of the definition. The marker is also the lock: a caller holds an exclusive flock on
it from reading it to writing it, so two concurrent calls with one key make one job. What a crash
or a deletion leaves is safe (docs/tools.md): an empty marker, or one naming a job that is gone,
is taken over by the next call with the key.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import JobError, invalid_input
from .store import FILE_MODE, JobDir, Store
from .supervisor import fsio

KEYS_DIR = ".keys"


def definition_digest(definition: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def marker_path(root: Path, key: str) -> Path:
    return root / KEYS_DIR / hashlib.sha256(key.encode()).hexdigest()


def _read(fd: int) -> dict[str, Any] | None:
    data = os.pread(fd, 4096, 0)
    try:
        record = json.loads(data) if data else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _existing(store: Store, record: dict[str, Any] | None) -> JobDir | None:
    job_id = (record or {}).get("job_id")
    if not isinstance(job_id, str):
        return None
    jd = JobDir(store.root, job_id)
    return jd if os.path.isfile(jd.file(fsio.META)) else None


def _open_locked(path: Path, *, create: bool) -> int | None:
    """The marker at ``path`` opened and flock-ed, or None when it does not exist and ``create`` is false.

    A marker may be unlinked by :func:`forget` while we wait for its lock: the lock is kept only
    once the path still names the very file locked, else the file is opened again.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    while True:
        try:
            fd = os.open(path, flags, FILE_MODE)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until closed: one caller per key at a time
        try:
            same = os.path.samestat(os.stat(path), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def forget(store: Store, key: str, job_id: str) -> None:
    """Drop the key's marker if it names ``job_id``: a run refused after making its job leaves no trace."""
    path = marker_path(store.root, key)
    fd = _open_locked(path, create=False)
    if fd is None:
        return
    try:
        if (_read(fd) or {}).get("job_id") == job_id:
            os.unlink(path)
    finally:
        os.close(fd)


def job_for_key(store: Store, key: str, definition: dict[str, Any], make: Callable[[], JobDir]) -> tuple[JobDir, bool]:
    """The job of ``key`` and True, or the job ``make()`` creates and False, recorded under the key.

    The same key with another definition is refused, naming the job it made.
    """
    digest = definition_digest(definition)
    store.prepare()
    path = marker_path(store.root, key)
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = _open_locked(path, create=True)
    except OSError as exc:
        raise JobError("io_error", f"cannot record idempotency_key in {path}: {exc}", retryable=True) from None
    assert fd is not None
    try:
        record = _read(fd)
        jd = _existing(store, record)
        if jd is not None and record is not None:
            if record.get("definition") != digest:
                raise invalid_input(
                    f"idempotency_key: {key!r} was used for job {jd.job_id} with another definition",
                    field="idempotency_key",
                    job_id=jd.job_id,
                )
            return jd, True
        jd = make()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"job_id": jd.job_id, "definition": digest}).encode(), 0)
            os.fsync(fd)
        except OSError as exc:
            jd.remove()
            raise JobError("io_error", f"cannot record idempotency_key in {path}: {exc}", retryable=True) from None
        return jd, False
    finally:
        os.close(fd)
