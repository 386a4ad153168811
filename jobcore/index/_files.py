"""Jobs' record files as the index sees them: each file's signature, whether it can be trusted
yet, and the row a job's two records make. Knows nothing of SQLite."""

from __future__ import annotations

import os
from typing import Any

from ..supervisor import fsio, records

#: An mtime this close to "now" may still change within its clock tick: not trusted yet.
SETTLE_NS = 1_000_000_000
MISSING = "-"
UNTRUSTED = ""


def trusted(sig: str, mtime_ns: int, now_ns: int) -> str:
    """The signature, or UNTRUSTED if the file may still change within this clock tick."""
    return sig if mtime_ns < now_ns - SETTLE_NS else UNTRUSTED


def _sig_of(info: os.stat_result, now_ns: int) -> str:
    changed = max(info.st_mtime_ns, info.st_ctime_ns)
    return trusted(f"{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}", changed, now_ns)


def stat_sig(path: str, now_ns: int) -> str:
    try:
        return _sig_of(os.stat(path), now_ns)
    except FileNotFoundError:
        return MISSING
    except OSError:
        return UNTRUSTED


def read(path: str, now_ns: int) -> tuple[dict[str, Any] | None, str]:
    """The record and the signature of the very file read; None for a missing or unreadable one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, MISSING
    except OSError:
        return None, UNTRUSTED
    try:
        sig = _sig_of(os.fstat(fd), now_ns)
        with os.fdopen(os.dup(fd), encoding="utf-8") as f:
            value = fsio.loads(f.read())
    except (OSError, ValueError):
        return None, UNTRUSTED
    finally:
        os.close(fd)
    return (value if isinstance(value, dict) else None), sig


def row_of(job_id: str, meta: dict[str, Any] | None, state: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """The row of a job's records; a record missing a field a listing shows makes the job unreadable."""
    try:
        if meta is None or state is None:
            raise KeyError("record")
        tags = meta["tags"]
        if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            raise TypeError("tags")
        row = {
            "readable": 1,
            "created_at": _text(meta["created_at"]),
            "created_ns": int(meta.get("created_ns", 0)),
            "cwd": _text(meta["cwd"]),
            "command": fsio.dumps(meta["command"], indent=None),
            "tags": fsio.dumps(tags, indent=None),
            "state": _text(records.status(state)),
            "exit_code": records.exit_code(state),
            "reason": state.get("reason"),
            "started_at": records.started_at(state),
            "finished_at": state.get("finished_at"),
            "updated_at": _text(state["updated_at"]),
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        empty = dict.fromkeys(("created_at", "cwd", "state", "updated_at"), "")
        return {"id": job_id, "readable": 0, "created_ns": 0, "command": "null", "tags": "[]", **empty}, []
    row["id"] = job_id
    return row, tags


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value
