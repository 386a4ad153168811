"""``slurm.json``: a Slurm job's id and options, beside the job's other files.

Its presence is what makes a job directory a Slurm job's (read on every observation, so a
cheap ``stat`` tells the two backends apart). Written before ``sbatch`` runs (no id yet) and
again, durably, with the id before the call returns. ``slurm.out`` is the batch script's own
output (what the node said before our supervisor took over).
"""

from __future__ import annotations

import os
from typing import Any

from ..supervisor import fsio

SLURM_FILE = "slurm.json"
SLURM_OUT = "slurm.out"
BATCH_SCRIPT = "slurm.sh"
_FILE_MODE = 0o600


def path(job_dir: str | os.PathLike[str]) -> str:
    return os.path.join(job_dir, SLURM_FILE)


def is_slurm(job_dir: str | os.PathLike[str]) -> bool:
    return os.path.exists(path(job_dir))


def read(job_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The record; ``{}`` when there is none (a local job) or it cannot be read."""
    try:
        record = fsio.read_json(path(job_dir))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def job_id(job_dir: str | os.PathLike[str]) -> str | None:
    """Slurm's id of the job, once ``sbatch`` has answered."""
    value = read(job_dir).get("job_id")
    return value if isinstance(value, str) else None


def write(job_dir: str | os.PathLike[str], record: dict[str, Any]) -> None:
    fsio.write_json_atomic(path(job_dir), record, mode=_FILE_MODE, durable=True)


def out_tail(job_dir: str | os.PathLike[str], max_bytes: int = 400) -> str:
    """The last lines of ``slurm.out``: why the batch script failed, if it did."""
    try:
        with open(os.path.join(job_dir, SLURM_OUT), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    # "ACK" is our supervisor's word to a local launcher; on a node it lands here.
    return " ".join(line.strip() for line in text.splitlines() if line.strip() and line.strip() != "ACK")
