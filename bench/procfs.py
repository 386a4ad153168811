"""What the benches read of processes from ``/proc``: memory by PSS, CPU time, parents."""

from __future__ import annotations

import os
from pathlib import Path


def memory_kib(pid: int, field: str) -> int:
    """A field of a process's ``smaps_rollup`` in KiB, 0 once the process is gone: ``Rss``,
    ``Pss`` (shared pages divided among their sharers), ``Private_Dirty`` (pages no other
    process maps: what each job adds)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (their own, not their children's)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting on I/O), all cores."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def parent(pid: int) -> int:
    """A process's parent pid, 0 once gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0
    return int(data[data.rfind(b")") + 2 :].split()[1])
