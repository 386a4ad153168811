"""What every launch obeys: the definition checked against the policy, and ``max_running``.

Shared by start, run and restart (and by create, for the definition).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from typing import Any

from ..errors import JobError
from ..launch import launch
from ..policy import Policy
from ..slurm import jobfile, probe, submit
from ..store import FILE_MODE, JobDir, is_running
from ..supervisor import records
from ..waiting import Flow
from ._context import Context

#: Taken around counting running jobs and launching one, when ``max_running`` is set.
LAUNCH_LOCK = ".launch.lock"


def check_definition(policy: Policy, meta: dict[str, Any]) -> None:
    """Every rule of the policy a stored definition must obey: its paths and its commands.

    Checked when a job is defined and again when it is launched: the definition may predate
    the policy in force.
    """
    policy.check_backend(meta.get("backend", "local"), meta.get("slurm", {}).get("partition"))
    policy.check_path("cwd", meta["cwd"])
    for path in meta.get("env_files", []):
        policy.check_path("env_files", path)
    policy.check_command("command", meta["command"])
    # A chosen wrapper is a program the job runs too (sh -c, the default, is not checked).
    if isinstance(meta["command"], str) and tuple(meta["shell_wrapper"]) != records.DEFAULT_SHELL_WRAPPER:
        policy.check_command("shell_wrapper", meta["shell_wrapper"])
    notification = meta.get("notification", {})
    trigger = notification.get("on_output_match", {})
    for prefix, sinks in (("", notification), ("on_output_match.", trigger)):
        if "notify_file" in sinks:
            policy.check_path(prefix + "notify_file", sinks["notify_file"])
        if "notify_command" in sinks:
            policy.check_command(prefix + "notify_command", sinks["notify_command"])


def _running_count(ctx: Context, besides: JobDir | None) -> int:
    count = 0
    for job_id in ctx.store.job_ids():
        if besides is not None and job_id == besides.job_id:
            continue
        jd = JobDir(ctx.store.root, job_id)
        try:
            count += is_running(jd, jd.read_state())
        except (OSError, ValueError, KeyError, JobError):
            continue
    return count


def check_room(ctx: Context, besides: JobDir | None = None) -> None:
    """``max_running``: refuse a launch that would run more jobs than allowed (retryable)."""
    cap = ctx.policy.max_running
    if cap is not None and (running := _running_count(ctx, besides)) >= cap:
        raise JobError(
            "policy_denied",
            f"policy max_running: {running} jobs are running, the most allowed is {cap}; try again when one has ended",
            retryable=True,
            details={"rule": "max_running", "max_running": cap, "running": running},
        )


@contextlib.contextmanager
def launch_slot(ctx: Context, besides: JobDir | None = None) -> Iterator[None]:
    """Hold the root's launch lock while counting running jobs and launching one, so that
    concurrent launches cannot overshoot ``max_running``. Without that rule: no lock at all.

    Taken after the job's own lock, always in that order, so two launchers cannot deadlock.
    """
    if ctx.policy.max_running is None:
        yield
        return
    fd = os.open(ctx.store.root / LAUNCH_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        check_room(ctx, besides)
        yield
    finally:
        os.close(fd)


def launch_job(ctx: Context, jd: JobDir) -> Flow[None]:
    """Start the job's supervisor, the job's environment filtered by the policy: here, or
    submitted to Slurm for a Slurm job."""
    environ = ctx.policy.job_environ(os.environ)
    if not jobfile.is_slurm(jd.path):
        yield from launch(jd, environ)
        return
    meta = jd.read_meta()
    check_shared(ctx, meta["slurm"])
    submit.submit(jd, meta, environ)


def check_shared(ctx: Context, slurm: dict[str, Any]) -> None:
    """Slurm jobs only on a store the nodes share (a probe job, once per root and partition)."""
    ctx.store.prepare()
    probe.ensure_shared(ctx.store.root, slurm.get("partition"), slurm.get("account"))
