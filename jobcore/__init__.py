"""agent-jobs engine: durable background jobs under detached supervisors.

No MCP here. This module is the public surface, all a caller (the MCP server included) imports:
``Jobs`` and ``AsyncJobs`` run the verbs of the table :data:`VERBS`, return the payload models
of :mod:`jobcore.payloads` and raise :class:`JobError`; with them come the policy, the
constants a server shows and the retention setting it checks at start.

The names are loaded when first used, so that importing a light submodule (the store, the index)
does not load the models and pydantic: ``agent-jobs ls`` starts faster without them. The
supervisor (:mod:`jobcore.supervisor`) is started by path under ``python -S``, so it never
imports this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import AsyncJobs, Jobs
    from .errors import JobError
    from .inputs import MAX_BYTES_CAP
    from .payloads import ErrorInfo, ErrorPayload, Payload
    from .policy import SERVER_SECRETS, Policy
    from .retention import RETENTION_ENV, retention_seconds
    from .verbs import VERBS, Verb

#: Each public name and the module it comes from.
_SOURCES = {
    "AsyncJobs": "api",
    "Jobs": "api",
    "JobError": "errors",
    "MAX_BYTES_CAP": "inputs",
    "ErrorInfo": "payloads",
    "ErrorPayload": "payloads",
    "Payload": "payloads",
    "SERVER_SECRETS": "policy",
    "Policy": "policy",
    "RETENTION_ENV": "retention",
    "retention_seconds": "retention",
    "VERBS": "verbs",
    "Verb": "verbs",
}

__all__ = [
    "MAX_BYTES_CAP",
    "RETENTION_ENV",
    "SERVER_SECRETS",
    "VERBS",
    "AsyncJobs",
    "ErrorInfo",
    "ErrorPayload",
    "JobError",
    "Jobs",
    "Payload",
    "Policy",
    "Verb",
    "retention_seconds",
]


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
