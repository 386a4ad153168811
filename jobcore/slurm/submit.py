"""Submitting a job to Slurm: its batch script runs our supervisor on the node, by path.

The batch script ``exec``\\ s the very supervisor a local launch starts (see
:func:`jobcore.launch.supervisor_argv`), so the job directory fills with the same files. The
interpreter is ours, or ``AGENT_JOBS_SLURM_PYTHON`` where the nodes keep Python elsewhere.
There is no acknowledgement across hosts: the job is recorded ``queued`` before ``sbatch``
runs, its Slurm id durably after, and the supervisor writes ``running`` when it starts.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import JobError
from ..launch import supervisor_argv
from ..supervisor import fsio
from . import commands, jobfile, options

if TYPE_CHECKING:
    from ..store import JobDir

#: Where the nodes' Python lives, when it is not where the server's does.
PYTHON_VAR = "AGENT_JOBS_SLURM_PYTHON"
#: What sbatch itself reads to find the cluster: kept from the server's environment even when
#: the policy's ``pass_env`` keeps it from jobs (the job then sees it too: it names no secret).
_SLURM_CLIENT_VARS = ("SLURM_CONF", "SLURM_CLUSTERS")
_SCRIPT_MODE = 0o700


def job_name(job_id: str) -> str:
    """The Slurm job name of one of our jobs (``squeue -n`` finds it by this)."""
    return f"agent-jobs-{job_id}"


def batch_script(job_dir: str, environ: Mapping[str, str]) -> str:
    argv = supervisor_argv(job_dir)
    argv[0] = environ.get(PYTHON_VAR) or argv[0]
    return (
        "#!/bin/sh\n"
        "# agent-jobs: the job's supervisor, run by Slurm on the node (docs/slurm.md).\n"
        f"exec {shlex.join(argv)}\n"
    )


def submit(jd: JobDir, meta: dict[str, Any], environ: Mapping[str, str]) -> str:
    """Submit a ``created`` job (the caller holds its lock); returns Slurm's job id.

    ``environ`` is what the supervisor, and through it the job, inherits (``--export=ALL``).
    A submission Slurm refuses is recorded ``failed`` (``launch_failed``) and raised, as a
    local launch that fails is.
    """
    job_dir = str(jd.path)
    script = jd.file(jobfile.BATCH_SCRIPT)
    fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _SCRIPT_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(batch_script(job_dir, os.environ))
    slurm = meta.get("slurm", {})
    submitted_at = fsio.now_rfc3339()
    jobfile.write(job_dir, {"submitted_at": submitted_at})
    jd.write_state("queued")
    out = jd.file(jobfile.SLURM_OUT)
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={job_name(jd.job_id)}",
        f"--output={out}",
        f"--error={out}",
        f"--chdir={job_dir}",
        "--export=ALL",
        *options.sbatch_flags(slurm, meta["timeout_ms"], meta["kill_after_ms"]),
        script,
    ]
    client = {name: os.environ[name] for name in _SLURM_CLIENT_VARS if name in os.environ}
    try:
        done = commands.run(argv, env={**environ, **client})
    except JobError as exc:
        _refused(jd, exc.message)
        raise
    slurm_id = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not slurm_id.isdigit():
        cause = commands.first_line(done.stderr or done.stdout)
        _refused(jd, cause)
        raise JobError(
            "launch_failed",
            f"job {jd.job_id}: Slurm refused it: {cause}",
            details={"job_id": jd.job_id, "backend": "slurm", "sbatch": cause},
        )
    jobfile.write(job_dir, {"job_id": slurm_id, "submitted_at": submitted_at})
    return slurm_id


def _refused(jd: JobDir, cause: str) -> None:
    """Record a submission that did not happen; the marker keeps a late supervisor from running it."""
    try:
        os.close(os.open(jd.file(fsio.ACK), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    jd.write_state("failed", finished_at=fsio.now_rfc3339(), reason=f"launch_failed: sbatch: {cause}")
