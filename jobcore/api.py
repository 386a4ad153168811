"""The public engine: :class:`Jobs` (blocking) and :class:`AsyncJobs` (anyio), one code path.

Each method takes the verb's inputs as keyword arguments (the tools' field names, durations
in seconds), validates them strictly and returns the payload model; a refusal raises
:class:`~jobcore.errors.JobError`. Every method goes through the table of verbs
(:data:`~jobcore.verbs.VERBS`); there is one method per verb for its signature and its docs.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from .budget import PAYLOAD_BUDGET_BYTES
from .payloads import (
    CreatePayload,
    DeletePayload,
    KillPayload,
    LaunchPayload,
    ListPayload,
    Payload,
    SearchPayload,
    SnapshotPayload,
    TagPayload,
    WaitPayload,
)
from .policy import Policy
from .store import Store
from .verbs import VERBS, Context, Verb
from .waiting import drive_async, drive_sync


class _Base:
    """What both APIs hold: the store, the policy and the budget per call, and a verb bound to them."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        policy: Policy | None = None,
        budget_bytes: int | None = PAYLOAD_BUDGET_BYTES,
        backend: str = "local",
    ) -> None:
        self.store = Store(root)
        self.policy = policy or Policy()
        #: The budget per call (None: none), see docs/payloads.md.
        self.budget_bytes = budget_bytes
        #: Where a job runs when it does not say: ``local`` or ``slurm`` (docs/slurm.md).
        self.backend = backend

    def prepare(self) -> None:
        """Make the store's root ready for use, or raise :class:`JobError` saying why it cannot be."""
        self.store.prepare()

    @property
    def root(self) -> str:
        return str(self.store.root)

    def _bind(self, verb: Verb, args: dict[str, Any]) -> functools.partial[Any]:
        return functools.partial(verb.call, Context(self.store, self.policy, self.budget_bytes, self.backend), args)


class Jobs(_Base):
    """Blocking API, for a CLI or a script."""

    def call(self, verb: Verb, args: dict[str, Any]) -> Payload:
        """Run ``verb`` (an entry of :data:`VERBS`) with ``args``, as the method of that name does."""
        return drive_sync(self._bind(verb, args))

    def create(self, **args: Any) -> CreatePayload:
        return self.call(VERBS["create"], args)  # type: ignore[return-value]

    def start(self, **args: Any) -> LaunchPayload:
        return self.call(VERBS["start"], args)  # type: ignore[return-value]

    def run(self, **args: Any) -> LaunchPayload:
        return self.call(VERBS["run"], args)  # type: ignore[return-value]

    def restart(self, **args: Any) -> LaunchPayload:
        return self.call(VERBS["restart"], args)  # type: ignore[return-value]

    def snapshot(self, **args: Any) -> SnapshotPayload:
        return self.call(VERBS["snapshot"], args)  # type: ignore[return-value]

    def search(self, **args: Any) -> SearchPayload:
        return self.call(VERBS["search"], args)  # type: ignore[return-value]

    def wait(self, **args: Any) -> WaitPayload:
        return self.call(VERBS["wait"], args)  # type: ignore[return-value]

    def kill(self, **args: Any) -> KillPayload:
        return self.call(VERBS["kill"], args)  # type: ignore[return-value]

    def list(self, **args: Any) -> ListPayload:
        return self.call(VERBS["list"], args)  # type: ignore[return-value]

    def delete(self, **args: Any) -> DeletePayload:
        return self.call(VERBS["delete"], args)  # type: ignore[return-value]

    def tag(self, **args: Any) -> TagPayload:
        return self.call(VERBS["tag"], args)  # type: ignore[return-value]


class AsyncJobs(_Base):
    """The same verbs for an event loop: blocking steps run in worker threads, waits in the loop."""

    async def call(self, verb: Verb, args: dict[str, Any]) -> Payload:
        """Run ``verb`` (an entry of :data:`VERBS`) with ``args``, as the method of that name does."""
        return await drive_async(self._bind(verb, args), launches=verb.launches, begin_in_loop=verb.waits)

    async def create(self, **args: Any) -> CreatePayload:
        return await self.call(VERBS["create"], args)  # type: ignore[return-value]

    async def start(self, **args: Any) -> LaunchPayload:
        return await self.call(VERBS["start"], args)  # type: ignore[return-value]

    async def run(self, **args: Any) -> LaunchPayload:
        return await self.call(VERBS["run"], args)  # type: ignore[return-value]

    async def restart(self, **args: Any) -> LaunchPayload:
        return await self.call(VERBS["restart"], args)  # type: ignore[return-value]

    async def snapshot(self, **args: Any) -> SnapshotPayload:
        return await self.call(VERBS["snapshot"], args)  # type: ignore[return-value]

    async def search(self, **args: Any) -> SearchPayload:
        return await self.call(VERBS["search"], args)  # type: ignore[return-value]

    async def wait(self, **args: Any) -> WaitPayload:
        return await self.call(VERBS["wait"], args)  # type: ignore[return-value]

    async def kill(self, **args: Any) -> KillPayload:
        return await self.call(VERBS["kill"], args)  # type: ignore[return-value]

    async def list(self, **args: Any) -> ListPayload:
        return await self.call(VERBS["list"], args)  # type: ignore[return-value]

    async def delete(self, **args: Any) -> DeletePayload:
        return await self.call(VERBS["delete"], args)  # type: ignore[return-value]

    async def tag(self, **args: Any) -> TagPayload:
        return await self.call(VERBS["tag"], args)  # type: ignore[return-value]
