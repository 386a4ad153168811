"""Live updates for open pages, over server-sent events, at a cost that does not grow with time.

The jobs page: one shared look at the store (the job directories and the mtimes of their
``meta.json`` and ``state.json``) at most once a period, however many pages are open; a page is
told only when that look differs. The job page: while the job runs, the engine's own ``wait``
(woken by the job's end through ``wake.fifo``) paces the reads of its logs from the last offset.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from jobcore import AsyncJobs, JobError

#: How often the shared look at the store may run, and how often an open jobs page asks for it.
LIST_PERIOD_S = 0.5
#: How long the job page waits on the job's end before reading its logs again.
JOB_PERIOD_S = 0.5
#: A comment line this often, so proxies and browsers keep an idle stream open.
KEEPALIVE_S = 15.0
#: Most bytes of each log sent in one event; a faster writer is caught up over several.
CHUNK_BYTES = 65536


def frame(event: str, data: Any) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


class StoreWatcher:
    """A version number that changes when a job is added, removed, or its definition or state is rewritten."""

    def __init__(self, root: str, period_s: float = LIST_PERIOD_S) -> None:
        self.root = root
        self.period_s = period_s
        self.version = 0
        self._fingerprint: frozenset[tuple[str, int, int]] | None = None
        self._checked_at = float("-inf")
        self._lock = anyio.Lock()

    def _look(self) -> frozenset[tuple[str, int, int]]:
        seen = []
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return frozenset()
        for entry in entries:
            if len(entry.name) != 32 or not entry.is_dir(follow_symlinks=False):
                continue
            seen.append((entry.name, _mtime(entry.path, "meta.json"), _mtime(entry.path, "state.json")))
        return frozenset(seen)

    async def current(self) -> int:
        """The version now; the store is looked at again only when the last look is a period old."""
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.period_s:
                fingerprint = await anyio.to_thread.run_sync(self._look)
                self._checked_at = time.monotonic()
                if fingerprint != self._fingerprint:
                    if self._fingerprint is not None:
                        self.version += 1
                    self._fingerprint = fingerprint
            return self.version

    async def stream(self) -> AsyncIterator[str]:
        """``changed`` each time the version moves; the page then fetches its rows again."""
        seen = await self.current()
        yield frame("hello", {"version": seen})
        quiet_since = time.monotonic()
        while True:
            await anyio.sleep(self.period_s)
            version = await self.current()
            if version != seen:
                seen = version
                quiet_since = time.monotonic()
                yield frame("changed", {"version": version})
            elif time.monotonic() - quiet_since >= KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"


def _mtime(folder: str, name: str) -> int:
    try:
        return os.stat(os.path.join(folder, name)).st_mtime_ns
    except OSError:
        return 0


def _state_of(snap: Any) -> dict[str, Any]:
    """What the job page shows of the job's state, as sent in a ``state`` event."""
    data = snap.to_dict()
    keys = ("state", "exit_code", "signal", "reason", "started_at", "finished_at", "duration_ms", "updated_at")
    return {k: data.get(k) for k in keys}


async def job_stream(jobs: AsyncJobs, job_id: str, offsets: tuple[int, int]) -> AsyncIterator[str]:
    """The job's new output from ``offsets`` (stdout, stderr) on, and its state when it changes.

    A ``reset`` event says the logs started over (a restart): the page loads itself again.
    """
    out_at, err_at = offsets
    last_state: dict[str, Any] | None = None
    quiet_since = time.monotonic()
    while True:
        try:
            snap = await jobs.snapshot(
                job_id=job_id, stdout_offset=out_at, stderr_offset=err_at, max_bytes=CHUNK_BYTES, tail_lines=0
            )
        except JobError as exc:
            yield frame("gone", {"code": exc.code, "message": exc.message})
            return
        window = snap.snapshot
        state = _state_of(snap)
        if (
            window.stdout_observed_bytes < out_at
            or window.stderr_observed_bytes < err_at
            or (last_state is not None and state["started_at"] != last_state["started_at"])
        ):
            yield frame("reset", state)
            return
        sent = False
        for stream, text, (begin, end) in (
            ("stdout", window.stdout_tail, window.stdout_range),
            ("stderr", window.stderr_tail, window.stderr_range),
        ):
            if end > begin:
                sent = True
                yield frame(stream, {"text": text, "begin": begin, "end": end})
        out_at, err_at = window.stdout_range[1], window.stderr_range[1]
        if state != last_state:
            sent = True
            last_state = state
            yield frame("state", state)
        if sent:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        caught_up = window.stdout_range[1] >= window.stdout_observed_bytes and (
            window.stderr_range[1] >= window.stderr_observed_bytes
        )
        if not caught_up:
            continue
        if state["state"] in ("running", "queued"):
            try:
                await jobs.wait(job_id=job_id, wait_seconds=JOB_PERIOD_S, tail_lines=0, max_bytes=0)
            except JobError:
                await anyio.sleep(JOB_PERIOD_S)
        else:
            await anyio.sleep(JOB_PERIOD_S * 2)
