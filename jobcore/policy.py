"""What a server's operator allows its jobs: the policy, read once at start (see ``docs/policy.md``).

The engine enforces it on every operation, so the MCP tools, the API and any other surface
obey the same rules. A refusal is a ``policy_denied`` error naming the rule, raised before
anything is created or changed.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Variables of the server's own environment that no job, supervisor or notify command inherits.
SERVER_SECRETS = ("AGENT_JOBS_TOKEN",)

#: The operations a read-only server still serves.
READ_ONLY_OPERATIONS = frozenset({"snapshot", "wait", "list"})


class Policy(BaseModel):
    """The rules; the defaults allow everything, as a server without a policy does."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    allowed_roots: list[str] = Field(
        default_factory=list,
        description="A job's cwd and every path input must resolve (symlinks followed) under one of these. "
        "Empty: anywhere.",
    )
    allow_commands: list[str] = Field(
        default_factory=list,
        description="Glob patterns; when any is given, a command must match one (its argv[0], or the whole "
        "command string). Empty: any command.",
    )
    deny_commands: list[str] = Field(
        default_factory=list,
        description="Glob patterns; a command whose argv[0] or whole string matches one is refused.",
    )
    pass_env: list[str] | None = Field(
        None,
        description="Glob patterns of the server's variables a job inherits. None: all of them (never the "
        "server's secrets).",
    )
    read_only: bool = Field(False, description="Only snapshot, wait and list_jobs are served.")
    max_running: int | None = Field(None, ge=1, description="Most jobs running at once under this store.")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        """A policy file: TOML (``.toml``) or JSON (anything else). Raises ``ValueError`` naming the problem."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p}: cannot read: {exc}") from None
        try:
            data: Any = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, ValueError) as exc:
            raise ValueError(f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in err["loc"]) or "policy"
            raise ValueError(f"{p}: {where}: {err['msg']}") from None

    def merged(self, **overrides: Any) -> Policy:
        """This policy with the given fields replaced (command-line flags over the file)."""
        return self.model_validate({**self.model_dump(), **overrides})

    def describe(self) -> dict[str, Any]:
        """The rules in force, as shown to agents (``server_info``) and logged at start."""
        return self.model_dump()
