"""What every verb works on: the store and the policy in force."""

from __future__ import annotations

from dataclasses import dataclass

from ..policy import Policy
from ..store import Store


@dataclass(frozen=True)
class Context:
    store: Store
    policy: Policy
