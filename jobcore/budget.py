"""The budget per call: no payload that carries output is sent as more than 64 KiB of JSON text.

An agent pays for every byte it reads with context. The size counted is the payload's JSON with
every non-ASCII character escaped (``\\ufffd`` for an invalid byte: 6 bytes), the largest form any
encoder sends, so the bound holds whatever the transport does. See docs/payloads.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from .payloads import Payload, Snapshot

PAYLOAD_BUDGET_BYTES = 64 * 1024
#: Kept free for what an adapter adds to a payload (the MCP server's ``lowered_to`` of ``wait_seconds``).
_RESERVE_BYTES = 128
#: The snapshot's windows, each with its own byte limit while fitting.
WINDOWS = ("stdout_tail", "stderr_tail", "stdout_head", "stderr_head")
#: Tries to fit: each shares the room left among the windows, in proportion to what each holds.
_FIT_TRIES = 16


def json_size(payload: Payload) -> int:
    return len(json.dumps(payload.to_dict()))


def over_budget(payload: Payload, budget: int | None) -> int:
    """By how many bytes ``payload`` is over ``budget`` (with the reserve), or <= 0 when it fits or there is none."""
    if budget is None:
        return 0
    return json_size(payload) + _RESERVE_BYTES - budget


def _text_size(text: str | None) -> int:
    return len(json.dumps(text)) if text else 0


def _held_bytes(snap: Snapshot, name: str) -> int:
    """The bytes of the log a window holds: exact for a tail, at least as many for a head."""
    if name == "stdout_tail":
        return snap.stdout_included_bytes
    if name == "stderr_tail":
        return snap.stderr_included_bytes
    return len((getattr(snap, name) or "").encode("utf-8"))


def _fair_shares(sizes: dict[str, int], room: int) -> dict[str, int]:
    """Split ``room`` among the windows: a small one keeps all it has, the large ones share the rest evenly."""
    shares: dict[str, int] = {}
    left = len(sizes)
    for name in sorted(sizes, key=lambda n: sizes[n]):
        shares[name] = min(sizes[name], room // left)
        room -= shares[name]
        left -= 1
    return shares


def fit_snapshot(
    read: Callable[[dict[str, int]], Snapshot],
    build: Callable[[Snapshot], Payload],
    max_bytes: int,
    budget: int | None,
) -> Payload:
    """``build(read(limits))`` with the windows' limits lowered until the payload fits the budget.

    A window made smaller keeps the bytes nearest its anchor (a tail its end, an offset window or
    a head its start), so its range still says where to page on from; ``cut_to_fit`` says it happened.
    """
    limits = dict.fromkeys(WINDOWS, max_bytes)
    cut = False
    for _ in range(_FIT_TRIES):
        snap = read(limits)
        if cut:  # said in the payload that is measured
            snap = snap.model_copy(update={"cut_to_fit": True, "truncated": True})
        payload = build(snap)
        over = over_budget(payload, budget)
        if over <= 0:
            break
        sizes = {name: _text_size(getattr(snap, name)) for name in WINDOWS}
        total = sum(sizes.values())
        if total <= 2 * len(WINDOWS):
            break
        for name, share in _fair_shares(sizes, max(0, total - over - 256)).items():
            if share < sizes[name]:
                limits[name] = int(min(limits[name], _held_bytes(snap, name)) * share / sizes[name])
        cut = True
    return payload
