"""agent-jobs engine: durable background jobs under detached supervisors.

No MCP here. ``Jobs`` and ``AsyncJobs`` are the public surface; they run the verbs of the
table :data:`VERBS`, return the payload models of :mod:`jobcore.payloads` and raise :class:`JobError`.

The supervisor (:mod:`jobcore.supervisor`) is started by path under ``python -S``, so it
never imports this package; keeping pydantic out of its start-up is why.
"""

from .api import AsyncJobs, Jobs
from .errors import JobError
from .payloads import ErrorInfo, ErrorPayload, Payload
from .policy import Policy
from .verbs import VERBS, Verb

__all__ = [
    "VERBS",
    "AsyncJobs",
    "ErrorInfo",
    "ErrorPayload",
    "JobError",
    "Jobs",
    "Payload",
    "Policy",
    "Verb",
]
