"""Finding a job's processes through /proc.

Standard library only (the supervisor imports it by file path). Every check counts a
zombie as gone: on some machines pid 1 never reaps orphans, so an exited process can stay
in the table for good.
"""

from __future__ import annotations

import os
import signal

#: Set in every command's environment; descendants inherit it, also those that leave the
#: job's process group with setsid, so ``kill`` can still find them.
MARKER_VAR = "AGENT_JOBS_JOB_ID"

_DEAD_STATES = frozenset({"Z", "X", "x"})


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[2])


def is_alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in _DEAD_STATES


def is_supervisor_of(pid: int, job_dir: str) -> bool:
    """True when ``pid`` is alive and is the supervisor of ``job_dir`` (guards against pid reuse)."""
    if not is_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return os.fsencode(job_dir) in argv


def _live_pids() -> list[tuple[int, int]]:
    """(pid, pgrp) of every live process but this one."""
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me:
            continue
        st = _stat(pid)
        if st is not None and st[0] not in _DEAD_STATES:
            out.append((pid, st[2]))
    return out


def _environ(pid: int) -> list[bytes]:
    """``KEY=VALUE`` entries of a process's environment (none if it is gone or not ours to read)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def group_alive(pgid: int) -> bool:
    """True while any live process is in process group ``pgid``."""
    return any(pgrp == pgid for _, pgrp in _live_pids())


def job_processes(job_id: str, pgid: int | None) -> list[int]:
    """Live processes of a job: its process group, plus any process carrying its marker."""
    marker = f"{MARKER_VAR}={job_id}".encode()
    found = []
    for pid, pgrp in _live_pids():
        if (pgid is not None and pgrp == pgid) or marker in _environ(pid):
            found.append(pid)
    return found


def live_jobs() -> tuple[set[str], set[int]]:
    """In one pass over /proc: the job ids carried by live processes, and their process groups."""
    prefix = f"{MARKER_VAR}=".encode()
    markers: set[str] = set()
    groups: set[int] = set()
    for pid, pgrp in _live_pids():
        groups.add(pgrp)
        for entry in _environ(pid):
            if entry.startswith(prefix):
                markers.add(entry[len(prefix) :].decode(errors="replace"))
    return markers, groups


def signal_all(pids: list[int], signum: int) -> int:
    """Send ``signum`` to each pid; returns how many were signalled."""
    sent = 0
    for pid in pids:
        try:
            os.kill(pid, signum)
            sent += 1
        except ProcessLookupError:
            pass
    return sent


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"
