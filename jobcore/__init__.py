"""agent-jobs engine: durable background jobs under detached supervisors.

No MCP here. This module is the public surface, all a caller (the MCP server included) imports:
``Jobs`` and ``AsyncJobs`` run the verbs of the table :data:`VERBS`, return the payload models
of :mod:`jobcore.payloads` and raise :class:`JobError`; with them come the policy, the
constants a server shows and the retention setting it checks at start.

The supervisor (:mod:`jobcore.supervisor`) is started by path under ``python -S``, so it
never imports this package; keeping pydantic out of its start-up is why.
"""

from .api import AsyncJobs, Jobs
from .errors import JobError
from .inputs import MAX_BYTES_CAP
from .payloads import ErrorInfo, ErrorPayload, Payload
from .policy import SERVER_SECRETS, Policy
from .retention import RETENTION_ENV, retention_seconds
from .verbs import VERBS, Verb

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
