"""How jobs read on the page: short ids, durations, times; pure functions of the payloads."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any

#: Shown instead of a masked variable's value; the value never reaches the page.
MASK = "***"


def short_id(job_id: str) -> str:
    return job_id[:8]


def command_text(command: str | list[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)


def parse_time(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def duration_ms(started_at: str | None, finished_at: str | None, now: datetime | None = None) -> int | None:
    """From start to end, or to now while running; None before the start."""
    start = parse_time(started_at)
    if start is None:
        return None
    end = parse_time(finished_at) or now or datetime.now(UTC)
    return max(0, int((end - start).total_seconds() * 1000))


def duration_text(ms: int | None) -> str:
    if ms is None:
        return ""
    seconds = ms / 1000
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds_int = int(seconds)
    hours, rest = divmod(seconds_int, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def time_text(stamp: str | None) -> str:
    """``2026-12-01 09:19:46`` in UTC: the page shows the store's clock, not guesses about the reader's zone."""
    moment = parse_time(stamp)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def end_text(entry: dict[str, Any]) -> str:
    """``exit 0``, ``SIGTERM`` or nothing yet."""
    if entry.get("signal"):
        return str(entry["signal"])
    if entry.get("exit_code") is not None:
        return f"exit {entry['exit_code']}"
    return ""


def env_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """The job's own variables as (key, shown value); a masked key's value is never read here."""
    masked = set(meta.get("mask") or [])
    shown = {}
    for pair in meta.get("env_vars") or []:
        key, _, value = str(pair).partition("=")
        shown[key] = value
    return [(key, MASK if key in masked else shown.get(key, MASK)) for key in meta.get("env_keys") or []]


def matches_text(entry: dict[str, Any], text: str) -> bool:
    """The free-text filter: a case-blind substring of the id, command, cwd or a tag."""
    if not text:
        return True
    needle = text.lower()
    haystack = [entry["job_id"], command_text(entry["command"]), entry["cwd"], *entry["tags"]]
    return any(needle in part.lower() for part in haystack)
