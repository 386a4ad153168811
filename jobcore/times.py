"""Ages given by people (``30d``, ``12h``) and the RFC 3339 times of the job store."""

from __future__ import annotations

import calendar
import re
import time

from .errors import invalid_input

#: ASCII digits only (``\d`` would read other scripts' digits, "\u0667d", as a number), and few
#: enough of them to stay a number of seconds rather than a 5000-digit integer.
_DURATION = re.compile(r"([0-9]{1,12})([dhms])")
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_age(text: str, field: str = "finished_older_than") -> float:
    """``30d``, ``12h``, ``45m``, ``90s`` (or a sum such as ``1h30m``) in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
        raise invalid_input(f"{field}: {shown} is not an age such as 7d, 12h, 45m or 90s", field=field)
    return float(sum(int(n) * _UNIT_S[u] for n, u in parts))


def epoch(rfc3339: str) -> float:
    """Seconds since the epoch of a ``YYYY-MM-DDTHH:MM:SS[.mmm]Z`` time."""
    whole = calendar.timegm(time.strptime(rfc3339[:19], "%Y-%m-%dT%H:%M:%S"))
    fraction = rfc3339[19:].rstrip("Z")
    return whole + (float(fraction) if fraction.startswith(".") and len(fraction) > 1 else 0.0)


def finished_epoch(state: dict) -> float:
    """When an ended job ended (its last update if the end time is missing)."""
    return epoch(state.get("finished_at") or state["updated_at"])
