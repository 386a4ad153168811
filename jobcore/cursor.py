"""The ``list_jobs`` cursor: the position of the last job a page returned, opaque to clients.

A position is the job's place in the listing's order, ``(created_at, created_ns, job_id)``;
the next page holds the jobs after it, so jobs created between the calls (newer, listed
before it) neither shift the pages nor repeat on them.
"""

from __future__ import annotations

import base64
import binascii
import json

Position = tuple[str, int, str]


def encode(position: Position) -> str:
    text = json.dumps(list(position), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str) -> Position:
    """The position ``cursor`` holds; ValueError for anything :func:`encode` did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, created_ns, job_id = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise ValueError("not a cursor from list_jobs (pass next_cursor as it came)") from None
    if not (isinstance(created_at, str) and type(created_ns) is int and isinstance(job_id, str)):
        raise ValueError("not a cursor from list_jobs (pass next_cursor as it came)")
    return created_at, created_ns, job_id
