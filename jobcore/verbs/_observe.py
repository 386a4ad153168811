"""Watching a job: waiting for its end, for its processes to go, and reading what it wrote.

Shared by the verbs that launch a job and watch it (start, run, restart), and by wait and kill.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar

from .. import logs
from ..budget import fit_snapshot
from ..inotify import Inotify
from ..inputs import MAX_BYTES_CAP, Until, WatchOptions
from ..linewatch import LineWatch, watches
from ..payloads import Events, LaunchPayload, Payload, SlurmInfo, Snapshot
from ..slurm import POLL_S, jobfile, liveness
from ..store import JobDir
from ..supervisor import fsio, procs, records
from ..waiting import Flow, WaitFor

#: With the supervisor lost, other members of the group give no exit event: look again this often.
LOST_RECHECK_S = 0.5
#: How long a supervisor may take to record an end, or to escalate a kill, before it is
#: taken for unresponsive and SIGKILLed (see docs/records.md).
SUPERVISOR_GRACE_S = 1.0
#: How long start, run and restart watch the job when no ``wait_seconds`` is given.
DEFAULT_LAUNCH_WAIT_S = 10.0

P = TypeVar("P", bound=Payload)


def capped_max_bytes(max_bytes: int) -> tuple[int, dict[str, int] | None]:
    """``max_bytes`` within the cap, and the payload's ``lowered_to`` when it had to be lowered."""
    if max_bytes > MAX_BYTES_CAP:
        return MAX_BYTES_CAP, {"max_bytes": MAX_BYTES_CAP}
    return max_bytes, None


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def events(jd: JobDir) -> Events | None:
    """Trigger counters, once an output trigger has fired or been disabled."""
    try:
        counters = fsio.read_json(jd.file(fsio.TRIGGERS))
    except (OSError, ValueError):
        return None
    return Events(
        matched=counters["matched"],
        last_line=counters.get("last_line"),
        line_number=counters.get("line_number"),
        offset=counters.get("offset"),
        undelivered=counters.get("undelivered") or None,
        disabled=counters.get("disabled"),
    )


def fitted_payload(
    jd: JobDir,
    build: Callable[[Snapshot], P],
    budget: int | None,
    tail_lines: int,
    max_bytes: int,
    **options: int | None,
) -> P:
    """``build`` over the job's log windows, the windows made smaller until the payload fits the budget."""

    def read(limits: dict[str, int]) -> Snapshot:
        return logs.snapshot(
            jd.stdout_path, jd.stderr_path, tail_lines=tail_lines, max_bytes=max_bytes, limits=limits, **options
        )

    return fit_snapshot(read, build, max_bytes, budget)  # type: ignore[return-value]


def backend_fields(jd: JobDir, state: dict[str, Any]) -> dict[str, Any]:
    """A payload's ``backend`` and ``slurm`` for a Slurm job in ``state``; nothing for a local one."""
    info = liveness.info(jd, state)
    return {} if info is None else {"backend": "slurm", "slurm": SlurmInfo(**info)}


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def wait_for_end(jd: JobDir, deadline: float, watch: LineWatch | None = None) -> Flow[dict[str, Any]]:
    """The job's state once it has ended, or at the deadline, or once ``watch`` found its line.

    The supervisor holds the job's wake FIFO open for writing while the command runs;
    our read end hangs up the moment it closes it (after writing the end) or dies.
    The FIFO is opened before the state is read, so no end can slip between the two;
    the logs are scanned after the state is read, so an ended job's last lines are seen.
    A Slurm job's supervisor may hold its FIFO on another host: its files are looked at
    every ``POLL_S`` as well.
    """
    if watch is None and deadline <= time.monotonic():
        return jd.observed_state()  # no wait to come (``wait_seconds`` 0): the wake FIFO is not needed
    polled = jobfile.is_slurm(jd.path)
    while True:
        with ExitStack() as stack:
            fifo = os.open(jd.file(fsio.WAKE_FIFO), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            stack.callback(os.close, fifo)
            if watch is not None:
                watch.notify.drain()
            state = jd.observed_state()
            if watch is not None and watch.check() is not None:
                return state
            remaining = deadline - time.monotonic()
            if records.is_ended(state) or remaining <= 0:
                return state
            lines = [] if watch is None else [watch.notify.fd]
            request = WaitFor([fifo, *lines], min(remaining, POLL_S) if polled else remaining)
            if state.get("reason") == "supervisor_lost":
                leader = _pidfd(state["pid"]) if procs.is_alive(state["pid"]) else None
                if leader is not None:
                    stack.callback(os.close, leader)
                fds = [leader] if leader is not None else []
                request = WaitFor([*fds, *lines], min(remaining, LOST_RECHECK_S))
            yield request


def wait_for_ends(
    jds: list[JobDir],
    line_watches: list[LineWatch | None],
    notify: Inotify | None,
    mode: str,
    deadline: float,
) -> Flow[tuple[dict[str, dict[str, Any]], list[str]]]:
    """Every job's state, and the ids of those that ended (or matched), first first.

    Like :func:`wait_for_end`, on all the jobs' wake FIFOs at once: each FIFO is opened before
    its job's state is read, and only the FIFOs of jobs still running are waited on.
    """
    states: dict[str, dict[str, Any]] = {}
    ended: list[str] = []
    while True:
        with ExitStack() as stack:
            if notify is not None:
                notify.drain()
            fifos: list[int] = []
            lost = False
            polled = False
            pending = 0
            newly: list[tuple[str, str]] = []
            for jd, watch in zip(jds, line_watches, strict=True):
                if jd.job_id in ended:
                    continue
                fifo = os.open(jd.file(fsio.WAKE_FIFO), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                stack.callback(os.close, fifo)
                state = states[jd.job_id] = jd.observed_state()
                if records.is_ended(state) or (watch is not None and watch.check() is not None):
                    newly.append((state.get("finished_at") or "~", jd.job_id))
                    continue
                pending += 1
                polled = polled or jobfile.is_slurm(jd.path)
                if state.get("reason") == "supervisor_lost":
                    lost = True  # its FIFO hangs up for good: look again now and then instead
                else:
                    fifos.append(fifo)
            ended.extend(job_id for _, job_id in sorted(newly))
            remaining = deadline - time.monotonic()
            if (ended if mode == "any" else not pending) or remaining <= 0:
                return states, ended
            lines = [] if notify is None else [notify.fd]
            period = min(LOST_RECHECK_S if lost else remaining, POLL_S if polled else remaining)
            yield WaitFor([*fifos, *lines], min(remaining, period))


def wait_any_exit(pids: list[int], timeout: float) -> Flow[None]:
    with ExitStack() as stack:
        fds = []
        for pid in pids:
            if (fd := _pidfd(pid)) is not None:
                stack.callback(os.close, fd)
                fds.append(fd)
        if len(fds) == len(pids):  # else one is gone already: look again at once
            yield WaitFor(fds, timeout)


def stop_job(
    job_id: str, pgid: int | None, signum: int | None, escalate_after: float | None, deadline: float
) -> Flow[list[int]]:
    """Send ``signum`` (None: none) to the job's processes and watch them go, until the deadline.

    With ``escalate_after``, SIGKILL whatever is still alive that many seconds later.
    Returns the pids still alive.
    """
    if signum is not None:
        procs.signal_job(job_id, pgid, signum)
    escalate_at = None if escalate_after is None else time.monotonic() + escalate_after
    while True:
        pids = procs.job_processes(job_id, pgid)
        now = time.monotonic()
        if not pids or now >= deadline:
            return pids
        if escalate_at is not None and now >= escalate_at:
            procs.signal_job(job_id, pgid, signal.SIGKILL)
            escalate_at = None
            continue
        until = deadline if escalate_at is None else min(deadline, escalate_at)
        yield from wait_any_exit(pids, until - now)


def kill_supervisor(jd: JobDir, supervisor: int) -> Flow[None]:
    """SIGKILL a supervisor that does not respond and wait for it to go."""
    if procs.is_supervisor_of(supervisor, str(jd.path)):
        try:
            os.kill(supervisor, signal.SIGKILL)
        except ProcessLookupError:
            return
        yield from wait_any_exit([supervisor], SUPERVISOR_GRACE_S)


def watch_launched(
    verb: str,
    jd: JobDir,
    watch: WatchOptions,
    started: float,
    max_bytes: int,
    lowered: dict[str, int] | None,
    budget: int | None,
    *,
    existing: bool = False,
    until: Until | None = None,
) -> Flow[LaunchPayload]:
    """Watch a job just launched until it ends, ``until`` matches or ``wait_seconds`` pass.

    The payload of start, run and restart.
    """
    wait_s = DEFAULT_LAUNCH_WAIT_S if watch.wait_seconds is None else watch.wait_seconds
    observed_from = time.monotonic()
    with ExitStack() as stack:
        # An inotify instance only for ``until``: most launches have none, and a thousand at once each paid for one.
        line_watch = None if until is None else watches([jd], until, stack.enter_context(Inotify()))[0]
        state = yield from wait_for_end(jd, observed_from + wait_s, line_watch)
    now = time.monotonic()
    meta = jd.read_meta()
    ended = records.is_ended(state)
    found_events = events(jd)
    slurm = backend_fields(jd, state)

    def build(snap: Snapshot) -> LaunchPayload:
        return LaunchPayload(
            type=verb,  # type: ignore[arg-type]
            job_id=jd.job_id,
            state=records.status(state),
            tags=meta["tags"],
            env_vars=meta["env_vars"] or None,
            stdout_log_path=jd.stdout_path,
            stderr_log_path=jd.stderr_path,
            waited_ms=ms(now - observed_from),
            elapsed_ms=ms(now - started),
            snapshot=None if ended else snap,
            final_snapshot=snap if ended else None,
            lowered_to=lowered,
            existing=existing or None,
            events=found_events,
            matched=None if line_watch is None else line_watch.matched,
            **slurm,
            **(records.end_fields(state) if ended else {"write_errors": state.get("write_errors")}),
        )

    return fitted_payload(jd, build, budget, watch.tail_lines, max_bytes)
