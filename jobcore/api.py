"""The public engine: :class:`Jobs` (blocking) and :class:`AsyncJobs` (anyio), one code path.

Each method takes the operation's inputs as keyword arguments (the tools' field names, durations
in seconds), validates them strictly and returns the payload model; a refusal raises
:class:`~jobcore.errors.JobError`.
"""

from __future__ import annotations

import os
from typing import Any

from .inputs import (
    DeleteInput,
    JobSpec,
    KillInput,
    ListInput,
    RunInput,
    SnapshotInput,
    StartInput,
    TagInput,
    parse,
)
from .operations import Operations
from .payloads import (
    CreatePayload,
    DeletePayload,
    KillPayload,
    LaunchPayload,
    ListPayload,
    SnapshotPayload,
    TagPayload,
    WaitPayload,
)
from .policy import Policy
from .store import Store
from .waiting import drive_async, drive_sync


class _Base:
    def __init__(self, root: str | os.PathLike[str] | None = None, *, policy: Policy | None = None) -> None:
        self.store = Store(root)
        self.policy = policy or Policy()
        self._ops = Operations(self.store, self.policy)

    def prepare(self) -> None:
        """Make the store's root ready for use, or raise :class:`JobError` saying why it cannot be."""
        self.store.prepare()

    @property
    def root(self) -> str:
        return str(self.store.root)


class Jobs(_Base):
    """Blocking API, for a CLI or a script."""

    def create(self, **args: Any) -> CreatePayload:
        return drive_sync(self._ops.create(parse(JobSpec, args)))

    def start(self, **args: Any) -> LaunchPayload:
        return drive_sync(self._ops.start(parse(StartInput, args)))

    def run(self, **args: Any) -> LaunchPayload:
        return drive_sync(self._ops.run(parse(RunInput, args)))

    def restart(self, **args: Any) -> LaunchPayload:
        return drive_sync(self._ops.restart(parse(StartInput, args)))

    def snapshot(self, **args: Any) -> SnapshotPayload:
        return drive_sync(self._ops.snapshot(parse(SnapshotInput, args)))

    def wait(self, **args: Any) -> WaitPayload:
        return drive_sync(self._ops.wait(parse(StartInput, args)))

    def kill(self, **args: Any) -> KillPayload:
        return drive_sync(self._ops.kill(parse(KillInput, args)))

    def list(self, **args: Any) -> ListPayload:
        return drive_sync(self._ops.list(parse(ListInput, args)))

    def delete(self, **args: Any) -> DeletePayload:
        return drive_sync(self._ops.delete(parse(DeleteInput, args)))

    def tag(self, **args: Any) -> TagPayload:
        return drive_sync(self._ops.tag(parse(TagInput, args)))


class AsyncJobs(_Base):
    """The same operations for an event loop: blocking steps run in worker threads, waits in the loop."""

    async def create(self, **args: Any) -> CreatePayload:
        return await drive_async(self._ops.create(parse(JobSpec, args)))

    async def start(self, **args: Any) -> LaunchPayload:
        return await drive_async(self._ops.start(parse(StartInput, args)))

    async def run(self, **args: Any) -> LaunchPayload:
        return await drive_async(self._ops.run(parse(RunInput, args)))

    async def restart(self, **args: Any) -> LaunchPayload:
        return await drive_async(self._ops.restart(parse(StartInput, args)))

    async def snapshot(self, **args: Any) -> SnapshotPayload:
        return await drive_async(self._ops.snapshot(parse(SnapshotInput, args)))

    async def wait(self, **args: Any) -> WaitPayload:
        return await drive_async(self._ops.wait(parse(StartInput, args)))

    async def kill(self, **args: Any) -> KillPayload:
        return await drive_async(self._ops.kill(parse(KillInput, args)))

    async def list(self, **args: Any) -> ListPayload:
        return await drive_async(self._ops.list(parse(ListInput, args)))

    async def delete(self, **args: Any) -> DeletePayload:
        return await drive_async(self._ops.delete(parse(DeleteInput, args)))

    async def tag(self, **args: Any) -> TagPayload:
        return await drive_async(self._ops.tag(parse(TagInput, args)))
