"""Running Slurm's commands (``sbatch``, ``scontrol``, ``scancel``): found on PATH, bounded in time.

A command that is missing, hangs or cannot reach the controller is ``backend_unavailable``
(retryable): Slurm is down, not the caller wrong.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import JobError

if TYPE_CHECKING:
    import subprocess

#: Longest a Slurm command may take before Slurm is taken for unavailable.
COMMAND_TIMEOUT_S = 20.0
#: What Slurm's commands say when the controller does not answer (not a refusal of the request).
_UNREACHABLE = ("Unable to contact slurm controller", "Socket timed out", "Connection refused", "Zero Bytes")


def unavailable(message: str, **details: object) -> JobError:
    return JobError("backend_unavailable", message, retryable=True, details={"backend": "slurm", **details})


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command to its end; its exit status is the caller's to judge."""
    import subprocess  # here: the CLI's cold start (every read of the store) never needs it

    program = shutil.which(argv[0])
    if program is None:
        raise unavailable(f"Slurm's {argv[0]} is not installed (not on PATH)", command=argv[0])
    try:
        done = subprocess.run(
            [program, *argv[1:]],
            capture_output=True,
            text=True,
            env=None if env is None else dict(env),
            timeout=COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise unavailable(f"{argv[0]} did not answer within {COMMAND_TIMEOUT_S:g} s", command=argv[0]) from None
    if done.returncode != 0 and any(text in done.stderr for text in _UNREACHABLE):
        raise unavailable(f"{argv[0]}: {first_line(done.stderr)}", command=argv[0])
    return done


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def cluster_problem() -> str | None:
    """Why no Slurm cluster can be used here, or None when one answers (a partition is up)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm's commands are not installed"
    try:
        done = run(["sinfo", "-h", "-o", "%a"])
    except JobError as exc:
        return exc.message
    if done.returncode != 0:
        return f"sinfo: {first_line(done.stderr)}"
    if "up" not in done.stdout.split():
        return "no Slurm partition is up"
    return None
