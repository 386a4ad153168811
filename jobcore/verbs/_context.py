"""What every verb works on: the store, the policy in force, the budget per call and the default backend."""

from __future__ import annotations

from dataclasses import dataclass

from ..budget import PAYLOAD_BUDGET_BYTES
from ..policy import Policy
from ..store import Store


@dataclass(frozen=True)
class Context:
    store: Store
    policy: Policy
    #: Most bytes of JSON a payload carrying output may take (docs/payloads.md); None: no budget.
    budget_bytes: int | None = PAYLOAD_BUDGET_BYTES
    #: Where a job runs when it does not say (``--backend``, ``AGENT_JOBS_BACKEND``).
    backend: str = "local"
