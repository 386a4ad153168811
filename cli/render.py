"""What people read: the job table, a job's record, log text, one-line answers; times in words.

Colour and widths come from ``rich``, which colours only a terminal and never with ``NO_COLOR``
set. Only :func:`job_table` and :func:`record` import it, so log text goes out unchanged and fast;
the payload models are named for their types only, so the fast ``ls`` loads neither them nor pydantic.
"""

from __future__ import annotations

import enum
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.console import Console

    from jobcore.payloads import DeletePayload, KillPayload, SnapshotPayload, WaitPayload

    class Listed(Protocol):
        """A job as the table shows it: an entry of the ``list_jobs`` payload, or a row of the index."""

        @property
        def job_id(self) -> str: ...
        @property
        def state(self) -> str: ...
        @property
        def command(self) -> str | list[str]: ...
        @property
        def tags(self) -> list[str]: ...
        @property
        def exit_code(self) -> int | None: ...
        @property
        def reason(self) -> str | None: ...
        @property
        def started_at(self) -> str | None: ...
        @property
        def finished_at(self) -> str | None: ...


#: Characters of a job id shown in the table: enough to be a unique prefix in any real store.
SHORT_ID = 8
#: The command column is never narrower, even if the table must then be wider than the terminal.
MIN_COMMAND_WIDTH = 10
STATE_STYLES = {
    "created": "blue",
    "queued": "blue",
    "running": "cyan",
    "exited": "green",
    "killed": "yellow",
    "failed": "red",
}


class Stream(enum.Enum):
    """Which log a person reads: stdout, stderr, or both (stdout here, the job's stderr on stderr)."""

    STDOUT = "stdout"
    STDERR = "stderr"
    BOTH = "both"


def _console() -> Console:
    from rich.console import Console

    # rich drops colours under NO_COLOR but keeps bold and dim: a person who asks for none gets plain text.
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(highlight=False, soft_wrap=False, color_system=None if plain else "auto")


def command_text(command: str | list[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def duration_text(seconds: float) -> str:
    """``850ms``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def ago_text(stamp: str | None, now: datetime) -> str:
    """``5s ago``, ``3m ago``: the largest whole unit."""
    if stamp is None:
        return "-"
    seconds = max(0, int((now - _when(stamp)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _span(started: str | None, finished: str | None, now: datetime) -> str:
    if started is None:
        return "-"
    end = _when(finished) if finished else now
    return duration_text(max(0.0, (end - _when(started)).total_seconds()))


def _end_text(state: str, exit_code: int | None, reason: str | None) -> str:
    """The exit code, else why it ended when that says more than its state (``timeout``, ...)."""
    if exit_code is not None:
        return str(exit_code)
    return reason if reason and reason != state else ""


def job_table(root: str, jobs: Sequence[Listed], truncated: bool) -> None:
    """The jobs as a table that fits the terminal; the command is cut to the room left."""
    if not jobs:
        print(f"no jobs to show in {root} (agent-jobs ls --all lists every job, whatever its folder)")
        return
    from rich.table import Table
    from rich.text import Text

    now = datetime.now(UTC)
    rows = [
        (
            job.job_id[:SHORT_ID],
            job.state,
            _end_text(job.state, job.exit_code, job.reason),
            ago_text(job.started_at, now),
            _span(job.started_at, job.finished_at, now),
            ",".join(job.tags),
        )
        for job in jobs
    ]
    headers: tuple[str, ...] = ("ID", "STATE", "EXIT", "STARTED", "TIME", "TAGS")
    slurm_ids = [_slurm_id(root, job.job_id) for job in jobs]
    if any(slurm_ids):
        # Shown only when Slurm jobs are listed: each one's Slurm id, "local" for the others.
        headers += ("SLURM",)
        rows = [(*row, slurm_id or "local") for row, slurm_id in zip(rows, slurm_ids, strict=True)]
    console = _console()
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, name in enumerate(headers)]
    # Whole words in these columns; the command gets the room left, cut with an ellipsis.
    room = max(MIN_COMMAND_WIDTH, console.width - sum(widths) - 2 * len(widths))
    table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    for name, width in zip(headers, widths, strict=True):
        table.add_column(name, no_wrap=True, width=width)
    table.add_column("COMMAND", no_wrap=True, overflow="ellipsis", max_width=room)
    for job, row in zip(jobs, rows, strict=True):
        table.add_row(row[0], Text(row[1], style=STATE_STYLES.get(job.state, "")), *row[2:], command_text(job.command))
    console.print(table)
    if truncated:
        console.print(f"(more jobs than --limit {len(jobs)}; --limit 0 shows them all)")


def _slurm_id(root: str, job_id: str) -> str | None:
    """The Slurm job id of a Slurm job ("-" before ``sbatch`` answered), None for a local job:
    read from the job's ``slurm.json``, as the index rows the table may show do not carry it."""
    from jobcore.slurm import jobfile

    job_dir = os.path.join(root, job_id)
    if not jobfile.is_slurm(job_dir):
        return None
    return jobfile.job_id(job_dir) or "-"


def record(payload: SnapshotPayload) -> None:
    """Every field of the job, one per line, then the tails of its output."""
    from rich.text import Text

    console = _console()
    now = datetime.now(UTC)
    fields = payload.to_dict()
    fields.pop("snapshot")
    for key in ("schema_version", "ok", "type"):
        fields.pop(key, None)
    fields["command"] = command_text(payload.command)
    fields["tags"] = ",".join(payload.tags) or "(none)"
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        line = Text(f"{key:<{width}}  ", style="bold")
        style = STATE_STYLES.get(str(value), "") if key == "state" else ""
        # Nested fields (events, write_errors) as JSON, as the payload holds them.
        line.append(json.dumps(value) if isinstance(value, dict | list) else str(value), style=style)
        if key == "started_at" and value:
            line.append(f"  ({ago_text(str(value), now)}, ran {_span(payload.started_at, payload.finished_at, now)})")
        console.print(line, soft_wrap=True)  # a long path stays one line, to copy
    snap = payload.snapshot
    for name, text in (("stdout", snap.stdout_tail), ("stderr", snap.stderr_tail)):
        console.print(Text(f"--- {name} (tail) ---", style="bold dim"))
        sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
        sys.stdout.flush()


def chunk_writer(stream: Stream) -> Callable[[SnapshotPayload], None]:
    """Writes a snapshot's text as it is: stdout here, and with ``both`` the job's stderr on stderr."""

    def write(payload: SnapshotPayload) -> None:
        snap = payload.snapshot
        if stream is not Stream.STDERR and snap.stdout_tail:
            sys.stdout.write(snap.stdout_tail)
            sys.stdout.flush()
        if stream is Stream.STDERR and snap.stderr_tail:
            sys.stdout.write(snap.stderr_tail)
            sys.stdout.flush()
        if stream is Stream.BOTH and snap.stderr_tail:
            sys.stderr.write(snap.stderr_tail)
            sys.stderr.flush()

    return write


def _ended_text(state: str, exit_code: int | None, signal: str | None, reason: str | None) -> str:
    parts = [state]
    if exit_code is not None:
        parts.append(f"with code {exit_code}")
    if signal:
        parts.append(f"by {signal}")
    if reason and reason not in {state, "exited", "signal"}:
        parts.append(f"({reason})")
    return " ".join(parts)


def wait_line(payload: WaitPayload) -> None:
    if payload.timed_out:
        print(f"{payload.job_id} still {payload.state} after {duration_text(payload.waited_ms / 1000)}")
        return
    print(f"{payload.job_id} {_ended_text(payload.state, payload.exit_code, payload.signal, payload.reason)}")


def kill_line(payload: KillPayload) -> None:
    if payload.already_ended:
        print(f"{payload.job_id} had already ended: {payload.state}")
        return
    ended = _ended_text(payload.state, payload.exit_code, payload.end_signal, payload.reason)
    print(f"{payload.job_id} sent {payload.signal}: {ended}")


def delete_lines(payload: DeletePayload) -> None:
    if not payload.jobs:
        print("no jobs to delete")
    for job in payload.jobs:
        print(f"{job.job_id} {job.action.replace('_', ' ')}: {job.reason}")
