"""What a job may ask of Slurm: the checks on ``slurm.extra_args`` and the flags they become.

``extra_args`` pass straight to ``sbatch``, so an option we set ourselves (where the output
goes, what runs, the job's name) or one a field already sets (and the policy may restrict,
such as the partition) is refused, in any spelling sbatch accepts: ``--opt=value``, a unique
prefix of a long option (``--out``), or a short option with its value attached (``-pdebug``).
"""

from __future__ import annotations

import math
from typing import Any

#: Long options ``extra_args`` may not give: ours, or a field's.
RESERVED_LONG = (
    "--output",
    "--error",
    "--input",
    "--wrap",
    "--parsable",
    "--job-name",
    "--chdir",
    "--export",
    "--export-file",
    "--open-mode",
    "--array",
    "--wait",
    "--test-only",
    "--partition",
    "--time",
    "--cpus-per-task",
    "--mem",
    "--gres",
    "--account",
)
#: Their short forms.
RESERVED_SHORT = ("-o", "-e", "-i", "-J", "-D", "-a", "-W", "-p", "-t", "-c", "-A")
#: Added to the job's timeout and kill_after for Slurm's own time limit: our supervisor ends
#: the job first and records why; Slurm's limit is the backstop should the supervisor not.
TIME_MARGIN_S = 60


def refused_arg(arg: str) -> str | None:
    """Why ``arg`` may not be passed to sbatch, or None when it may."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return "is not an option; give options only, a value attached as --name=value"
    if arg.startswith("--"):
        name = arg.split("=", 1)[0]
        clash = [opt for opt in RESERVED_LONG if opt.startswith(name)]
        if clash:
            return f"would set {clash[0]}, which agent-jobs sets itself or a slurm field gives"
        return None
    if arg[:2] in RESERVED_SHORT:
        return f"would set {arg[:2]}, which agent-jobs sets itself or a slurm field gives"
    return None


def time_minutes(timeout_ms: int, kill_after_ms: int) -> int | None:
    """Slurm's ``--time`` in minutes for a job with this timeout (None: no timeout, no limit)."""
    if not timeout_ms:
        return None
    return math.ceil((timeout_ms + kill_after_ms) / 1000 / 60 + TIME_MARGIN_S / 60)


def sbatch_flags(options: dict[str, Any], timeout_ms: int, kill_after_ms: int) -> list[str]:
    """The flags a job's ``slurm`` options (as stored in ``meta.json``) give sbatch."""
    flags = []
    for field, flag in (
        ("partition", "--partition"),
        ("cpus", "--cpus-per-task"),
        ("mem", "--mem"),
        ("gres", "--gres"),
        ("account", "--account"),
    ):
        if options.get(field) is not None:
            flags.append(f"{flag}={options[field]}")
    limit = options.get("time_limit")
    if limit is None and (minutes := time_minutes(timeout_ms, kill_after_ms)) is not None:
        limit = str(minutes)
    if limit is not None:
        flags.append(f"--time={limit}")
    return [*flags, *options.get("extra_args", [])]
