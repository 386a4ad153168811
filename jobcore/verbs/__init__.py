"""The table of verbs: what each one takes, returns and runs, read by every surface.

``Jobs``, ``AsyncJobs`` and the MCP server all go through :data:`VERBS`, so the model a client's
schema is generated from is the model its arguments are validated with. Each verb lives in its
own module (finding how ``kill`` works means opening ``kill.py``); one that waits returns a
:data:`~jobcore.waiting.Flow`, one that never waits returns its payload.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..inputs import (
    DeleteInput,
    JobSpec,
    KillInput,
    ListInput,
    RunInput,
    SearchInput,
    SnapshotInput,
    StartInput,
    TagInput,
    WaitInput,
    WatchInput,
    parse,
)
from ..payloads import (
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
from ..policy import denied
from ..waiting import Flow
from ._context import Context
from ._observe import DEFAULT_LAUNCH_WAIT_S
from .create import create
from .delete import delete
from .kill import DEFAULT_KILL_WAIT_S, kill
from .list import list_jobs
from .restart import restart
from .search import search
from .snapshot import snapshot
from .start import run, start
from .tag import tag
from .wait import DEFAULT_WAIT_S, wait


@dataclass(frozen=True)
class Verb:
    """One verb: its input and payload models, the function that runs it, how long it waits by default."""

    name: str
    inputs: type[BaseModel]
    payload: type[Payload]
    run: Callable[[Context, Any], Flow[Any] | Payload]
    #: ``wait_seconds`` when none is given, or None for a verb that does not wait.
    wait_default_s: float | None = None
    #: Changes nothing, so a read-only server still serves it.
    read_only: bool = False
    #: Starts a supervisor: the async API bounds how many such calls launch at once.
    launches: bool = False

    @property
    def waits(self) -> bool:
        """Its function is a generator: calling it only validates and checks, the work is in its steps."""
        return inspect.isgeneratorfunction(self.run)

    def call(self, ctx: Context, args: Any) -> Flow[Any] | Payload:
        """Validate ``args`` with :attr:`inputs`, obey the policy's ``read_only``, and run the verb."""
        inp = parse(self.inputs, args)
        if ctx.policy.read_only and not self.read_only:
            served = ", ".join(sorted(v.name for v in VERBS.values() if v.read_only))
            raise denied(
                "read_only", f"this server is read-only: {self.name} is refused (only {served})", operation=self.name
            )
        return self.run(ctx, inp)


VERBS: dict[str, Verb] = {
    verb.name: verb
    for verb in (
        Verb("create", JobSpec, CreatePayload, create),
        Verb("start", StartInput, LaunchPayload, start, wait_default_s=DEFAULT_LAUNCH_WAIT_S, launches=True),
        Verb("run", RunInput, LaunchPayload, run, wait_default_s=DEFAULT_LAUNCH_WAIT_S, launches=True),
        Verb("restart", WatchInput, LaunchPayload, restart, wait_default_s=DEFAULT_LAUNCH_WAIT_S, launches=True),
        Verb("snapshot", SnapshotInput, SnapshotPayload, snapshot, read_only=True),
        Verb("search", SearchInput, SearchPayload, search, read_only=True),
        Verb("wait", WaitInput, WaitPayload, wait, wait_default_s=DEFAULT_WAIT_S, read_only=True),
        Verb("kill", KillInput, KillPayload, kill, wait_default_s=DEFAULT_KILL_WAIT_S),
        Verb("list", ListInput, ListPayload, list_jobs, read_only=True),
        Verb("delete", DeleteInput, DeletePayload, delete),
        Verb("tag", TagInput, TagPayload, tag),
    )
}

__all__ = ["VERBS", "Context", "Verb"]
