"""The one exception type the engine raises; it carries the error envelope's fields."""

from __future__ import annotations

from typing import Any, Literal

ErrorCode = Literal[
    "invalid_input",
    "job_not_found",
    "ambiguous_job_id",
    "invalid_state",
    "stdin_too_large",
    "launch_failed",
    "io_error",
    "policy_denied",
    "backend_unavailable",
    "pattern_timeout",
    "internal_error",
]


class JobError(Exception):
    """A refused or failed operation, with its error code (every code: ``docs/payloads.md``)."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        retryable: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.retryable = retryable
        self.details = details


def invalid_input(message: str, **details: Any) -> JobError:
    return JobError("invalid_input", message, details=details or None)
