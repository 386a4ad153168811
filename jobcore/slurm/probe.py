"""The shared-storage probe: a Slurm job must be able to write the store, and we must see it.

Before the first Slurm job a process submits under a root (per partition), a tiny job writes
a probe file under the root from its node; unless the file appears here within
:data:`PROBE_TIMEOUT_S`, Slurm jobs are refused (``backend_unavailable``) and nothing is
created; a partition or account Slurm refuses is ``invalid_input``. A passed probe is
remembered for the life of the process.
"""

from __future__ import annotations

import os
import secrets
import shlex
import threading
import time
from pathlib import Path

from ..errors import JobError
from . import commands, record

#: Longest the probe job may take to be scheduled, run and be seen.
PROBE_TIMEOUT_S = 30.0
#: How often the probe file is looked for, and Slurm asked whether the probe job ended.
_LOOK_S = 0.05
_passed: set[tuple[str, str | None]] = set()
_lock = threading.Lock()


def ensure_shared(root: Path, partition: str | None, account: str | None) -> None:
    """Return once a job on ``partition`` has been seen writing under ``root``; else raise."""
    key = (str(root), partition)
    if key in _passed:
        return
    with _lock:
        if key not in _passed:
            _probe(root, partition, account)
            _passed.add(key)


def _probe(root: Path, partition: str | None, account: str | None) -> None:
    probe = root / f".slurm-probe-{secrets.token_hex(8)}"
    flags = [f"--partition={partition}"] if partition else []
    flags += [f"--account={account}"] if account else []
    done = commands.run(
        [
            "sbatch",
            "--parsable",
            "--job-name=agent-jobs-probe",
            "--output=/dev/null",
            "--time=1",
            *flags,
            f"--wrap=echo ok > {shlex.quote(str(probe))}",
        ]
    )
    slurm_id = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not slurm_id.isdigit():
        # Slurm answered, and refused the partition or the account the job asks for.
        cause = commands.first_line(done.stderr)
        raise JobError(
            "invalid_input",
            f"slurm: Slurm refuses a job with these options: {cause}",
            details={"field": "slurm", "partition": partition, "account": account, "sbatch": cause},
        )
    try:
        _await(probe, slurm_id, root)
    finally:
        commands.run(["scancel", slurm_id])
        try:
            os.unlink(probe)
        except FileNotFoundError:
            pass


def _await(probe: Path, slurm_id: str, root: Path) -> None:
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    ask_at = time.monotonic() + 1.0
    found: record.SlurmJob | None = None
    while time.monotonic() < deadline:
        if probe.exists():
            return
        if time.monotonic() >= ask_at:
            found = record.query(slurm_id)
            ask_at = time.monotonic() + 1.0
            if found is None or not found.active:
                # Ended: what it wrote is given a last moment to appear (an NFS client's cache).
                time.sleep(1.0)
                if probe.exists():
                    return
                break
        time.sleep(_LOOK_S)
    where = f" on node {found.node}" if found is not None and found.node else ""
    state = f" ({found.state}{', ' + found.reason if found.reason else ''})" if found is not None else ""
    raise commands.unavailable(
        f"the job store {root} is not on storage the Slurm nodes share: probe job {slurm_id}{where}{state} "
        f"wrote {probe.name} there, not seen here within {PROBE_TIMEOUT_S:g} s",
        root=str(root),
        slurm_job_id=slurm_id,
    )
