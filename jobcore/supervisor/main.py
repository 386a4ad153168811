"""The per-job supervisor: started detached, runs one command and writes its record.

Imported as ``supervisor.main`` under ``python -S -E`` and run as ``main(job_dir)``, with
fd 2 on the launcher's acknowledgement pipe (see :mod:`jobcore.launch`). Standard library
only, and never the engine's package: it starts once per job and stays resident for the
job's life, so start-up time and memory are what it is judged by.

The command gets ``stdout.log`` and ``stderr.log`` as its own stdout and stderr, so its
output reaches disk without passing through us: nothing is lost if this process dies.
We follow those files to build ``full.log``, enforce the timeout, record the end at the
root process's exit, and reap every descendant (we are their child subreaper).

The job itself, its command and record, is :class:`supervisor.job.Supervisor`.
"""

from __future__ import annotations

import _signal
import ctypes
import os
import select
import time
from _collections_abc import Mapping  # collections.abc without importing collections

from . import events, follow, fsio
from .job import Supervisor

_PR_SET_CHILD_SUBREAPER = 36
#: Looked up once, at import: a forked supervisor then only calls it (finding it costs pages).
prctl = ctypes.CDLL(None, use_errno=True).prctl
_FOLLOW_MIN_S = 0.005
#: The longest wait between two looks at a quiet job's logs (the command writes them itself:
#: no event tells us). Each look costs ~0.2 ms of CPU, so 1,000 quiet jobs take a quarter of a
#: core at this period; a line after a quiet spell reaches ``full.log`` within it.
_FOLLOW_MAX_S = 1.0


def release_subreaper() -> None:
    """Stop being the subreaper :func:`main` made this process (for a process that carries on)."""
    prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _reap(sup: Supervisor, notifier: events.Notifier, reap_all: bool) -> bool:
    """Reap every exited child (or, unless ``reap_all``, the command only); returns False once
    we have none left to wait for."""
    while True:
        if not reap_all and (sup.ended or sup.pid is None):
            return False
        try:
            pid, status = os.waitpid(-1 if reap_all else sup.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        if pid == sup.pid and not sup.ended:
            sup.on_command_end(status)
        else:
            notifier.child_exited(pid, status)  # else a reaped orphan of the job


def _acknowledge() -> None:
    """Tell the launcher we own the job, then detach fd 2 from its pipe."""
    os.write(2, b"ACK")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def main(job_dir: str, environ: Mapping[str, str] | None = None, *, reap_all: bool = True) -> int:
    """Supervise the job in ``job_dir`` until its end is on disk and every descendant is reaped.

    ``environ`` is what the job inherits, ours when None. The fork server passes the request's
    rather than put it in ``os.environ``, which costs every forked supervisor pages and ~1 ms.
    ``reap_all=False`` is for a process with children of its own (the fork server's warm-up):
    only the command is waited for and reaped.
    """
    job_dir = os.path.abspath(job_dir)
    try:
        os.close(os.open(f"{job_dir}/{fsio.ACK}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return 0  # the launcher gave up on us and marked the launch failed: run nothing
    prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # Held open while the job runs; waiters see POLLHUP on their read end when we close it.
    wake_fd = os.open(f"{job_dir}/{fsio.WAKE_FIFO}", os.O_RDWR | os.O_NONBLOCK)
    sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    for signum in (_signal.SIGCHLD, _signal.SIGUSR1):
        _signal.signal(signum, lambda *_: None)
    _signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)

    errors = fsio.WriteErrorTally()
    sup = Supervisor(job_dir, errors, os.environ if environ is None else environ)
    notifier = events.Notifier(job_dir, sup.meta, errors)
    sup.before_end = notifier.record_finished
    sup.spawn()
    notifier.env = sup.env
    _acknowledge()
    woken = False

    def wake_on_end() -> None:
        # Once the end (and its event) is on disk: wake the waiters before any sink can take time.
        nonlocal woken
        if sup.end_on_disk and not woken:
            woken = True
            os.close(wake_fd)
            notifier.deliver_finished()

    wake_on_end()
    full_path = f"{job_dir}/{fsio.FULL}"
    full_fd = os.open(full_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    followers = [
        follow.LogFollower(f"{job_dir}/{name}", stream, full_fd, full_path, notifier.on_lines, errors)
        for name, stream in ((fsio.STDOUT, "stdout"), (fsio.STDERR, "stderr"))
    ]
    poller = select.poll()
    poller.register(sig_r, select.POLLIN)
    follow_s = _FOLLOW_MIN_S
    has_children = not sup.ended
    flushed = False
    while True:
        now = time.monotonic()
        if sup.timeout_at is not None and now >= sup.timeout_at:
            sup.on_timeout()
        if sup.escalate_at is not None and now >= sup.escalate_at:
            sup.escalate()
        if sup.sweep_at is not None and (now >= sup.sweep_at or sup.ended):
            # Reaped first: on a busy machine the signal has often ended every process of the
            # job by the time we run again, and then nothing is left to look for in /proc.
            has_children = _reap(sup, notifier, reap_all)
            if not has_children:
                sup.sweep_at = None  # the job left nothing behind: no /proc scan
            elif sup.sweep_due(now):
                sup.sweep()
        if sup.kill_sent_at is not None and (now >= sup.kill_sent_at or sup.ended):
            sup.acknowledge_kill()
        notifier.enforce_deadlines(now)
        deadlines = [
            d
            for d in (sup.timeout_at, sup.escalate_at, sup.sweep_at, sup.kill_sent_at, notifier.next_deadline())
            if d is not None
        ]
        wait_s = min([follow_s] + [d - now for d in deadlines])
        if poller.poll(max(0, round(wait_s * 1000))):
            try:
                signums = os.read(sig_r, 4096)
            except BlockingIOError:
                signums = b""
            if _signal.SIGUSR1 in signums:
                sup.on_kill_request()
        has_children = _reap(sup, notifier, reap_all)
        wake_on_end()
        # While matching is behind, a watched log waits (its bytes are safe in the file).
        budgets = [notifier.room() if notifier.watches(f.stream) else follow.PUMP_BUDGET for f in followers]
        moved = [f.pump(budget) for f, budget in zip(followers, budgets, strict=True)]
        notifier.match_pending()
        behind = any(m and m >= b for m, b in zip(moved, budgets, strict=True)) or notifier.lines_waiting
        if behind:
            follow_s = 0.0  # look at signals, then carry on at once
        elif any(moved):
            follow_s = _FOLLOW_MIN_S
        else:
            follow_s = min(max(follow_s, _FOLLOW_MIN_S) * 2, _FOLLOW_MAX_S)
        if not has_children and not flushed and not any(moved) and not notifier.lines_waiting:
            # Every log is read to its end and nothing of the job is left to write to it:
            # a last line without a newline is complete.
            for f in followers:
                f.flush()
            notifier.match_pending()
            flushed = True
        if notifier.counters_changed:
            notifier.write_counters()
        sup.sync_state(time.monotonic())
        wake_on_end()
        if not has_children and flushed and not notifier.busy and sup.settled:
            return 0
