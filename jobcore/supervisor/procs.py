"""Finding a job's processes through /proc.

Standard library only (part of the supervisor's subpackage). Every check counts a
zombie as gone: on some machines pid 1 never reaps orphans, so an exited process can stay
in the table for good.
"""

from __future__ import annotations

import _signal
import os

from .records import MARKER_VAR, SINK_VAR

SINK_VAR_PREFIX = f"{SINK_VAR}=".encode()

_DEAD_STATES = frozenset({"Z", "X", "x"})


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None when it is gone.

    The name is cut at the last ``)``: it may itself hold spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of ``pid``, or None when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return fields[0].decode(), int(fields[1]), int(fields[2])


def is_alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in _DEAD_STATES


def exit_status(pid: int) -> int | None:
    """The wait status of ``pid`` if it has exited and its parent has not reaped it yet (a
    zombie keeps it, in the last field of /proc/<pid>/stat); None otherwise."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] != b"Z" or len(fields) < 50:
        return None
    return int(fields[49])


def is_supervisor_of(pid: int, job_dir: str) -> bool:
    """True when ``pid`` is alive and is the supervisor of ``job_dir`` (guards against pid reuse)."""
    if not is_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    if os.fsencode(job_dir) in argv:
        return True
    # Forked by the fork server, whose command line it has: it holds the job directory on fd 3.
    try:
        held, wanted = os.stat(f"/proc/{pid}/fd/3"), os.stat(job_dir)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (wanted.st_dev, wanted.st_ino)


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


def _scan(job_id: str, pgid: int | None) -> tuple[list[int], list[int]]:
    """(live processes carrying the job's marker, live members of process group ``pgid``).

    Notify commands carry the marker too (they are given the job's id) but are not the
    job: their environment also has ``AGENT_JOBS_EVENT_TYPE``, which no job process has.
    """
    marker = f"{MARKER_VAR}={job_id}".encode()
    marked: list[int] = []
    members: list[int] = []
    for pid, pgrp in _live_pids():
        env = _environ(pid)
        if marker in env and not any(e.startswith(SINK_VAR_PREFIX) for e in env):
            marked.append(pid)
        if pgid is not None and pgrp == pgid:
            members.append(pid)
    return marked, members


def _ours(marked: list[int], members: list[int]) -> bool:
    """The group is the job's while a member carries its marker: a group id is free for
    reuse only once every member is gone, so a group with one of ours in it is ours."""
    return any(pid in marked for pid in members)


def group_alive(job_id: str, pgid: int) -> bool:
    """True while the job's process group has a live member (one carrying its marker).

    Only the group's members have their environment read: the rest of /proc costs a
    ``stat`` read each, so a reader noticing a lost supervisor stays cheap beside many jobs.
    """
    marker = f"{MARKER_VAR}={job_id}".encode()
    for pid, pgrp in _live_pids():
        if pgrp == pgid:
            env = _environ(pid)
            if marker in env and not any(e.startswith(SINK_VAR_PREFIX) for e in env):
                return True
    return False


def job_processes(job_id: str, pgid: int | None) -> list[int]:
    """Live processes of a job: its process group (while it is the job's), plus any
    process carrying its marker (descendants that left the group)."""
    marked, members = _scan(job_id, pgid)
    if not _ours(marked, members):
        return marked
    return marked + [pid for pid in members if pid not in marked]


def signal_job(job_id: str, pgid: int | None, signum: int) -> None:
    """Signal the job's process group at once (so no member forked meanwhile escapes),
    then every descendant that left it; a group id now used by others is left alone."""
    marked, members = _scan(job_id, pgid)
    if pgid is not None and _ours(marked, members):
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            pass
    signal_all([pid for pid in marked if pid not in members], signum)


def descendants(ancestor: int, outside_group: int | None = None) -> list[int]:
    """Live descendants of ``ancestor`` (not in process group ``outside_group``), found by
    parent links alone: one ``stat`` read a process and no ``environ``, what a subreaper
    needs to find every process left of its job."""
    children: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is not None and st[0] not in _DEAD_STATES:
            children.setdefault(st[1], []).append((int(name), st[2]))
    found: list[int] = []
    todo = [ancestor]
    while todo:
        for child, pgrp in children.get(todo.pop(), ()):
            if pgrp != outside_group:
                found.append(child)
            todo.append(child)
    return found


def is_notify_command(pid: int) -> bool:
    """True for a notify command (or a process it started): its environment names the event."""
    return any(e.startswith(SINK_VAR_PREFIX) for e in _environ(pid))


def live_jobs() -> set[str]:
    """In one pass over /proc: the ids of the jobs that have a live process.

    The same test as :func:`job_processes` for every job at once: a job lives while a process
    carries its marker, notify commands aside (a group id alone may have been reused by others).
    """
    prefix = f"{MARKER_VAR}=".encode()
    alive: set[str] = set()
    for pid, _ in _live_pids():
        env = _environ(pid)
        if any(e.startswith(SINK_VAR_PREFIX) for e in env):
            continue
        for entry in env:
            if entry.startswith(prefix):
                alive.add(entry[len(prefix) :].decode(errors="replace"))
    return alive


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


_SIGNAL_NAMES = {
    number: name
    for name, number in vars(_signal).items()
    if name.startswith("SIG")
    and not name.startswith(("SIG_", "SIGRT"))
    and name not in ("SIGIOT", "SIGPOLL", "SIGCLD")  # aliases of SIGABRT, SIGIO, SIGCHLD
    and isinstance(number, int)
}


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15 (without ``signal.Signals``: the enum module costs every launch)."""
    return _SIGNAL_NAMES.get(signum, f"SIG{signum}")
