"""What a server's operator allows its jobs: the policy, read once at start (see ``docs/policy.md``).

The engine enforces it on every operation, so the MCP tools, the API and any other surface
obey the same rules. A refusal is a ``policy_denied`` error naming the rule, raised before
anything is created or changed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import JobError
from .slurm import BACKENDS

#: Variables of the server's own environment that no job, supervisor or notify command inherits.
SERVER_SECRETS = ("AGENT_JOBS_TOKEN",)


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
    backends: list[str] | None = Field(
        None, description="The backends jobs may run on (local, slurm). None: every one this server offers."
    )
    slurm_partitions: list[str] | None = Field(
        None, description="The Slurm partitions jobs may ask for (a job must name one). None: any partition."
    )

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, backends: list[str] | None) -> list[str] | None:
        for backend in backends or []:
            if backend not in BACKENDS:
                raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
        return backends

    @field_validator("allowed_roots")
    @classmethod
    def _absolute_roots(cls, roots: list[str]) -> list[str]:
        for root in roots:
            if not os.path.isabs(os.path.expanduser(root)):
                raise ValueError(f"allowed root {root!r} is not an absolute path")
        return roots

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

    # --- enforcement: each check raises ``policy_denied`` naming the rule and the value ------

    def check_path(self, field: str, path: str) -> None:
        """``allowed_roots``: ``path`` (absolute), symlinks followed, lies under one of the roots."""
        if not self.allowed_roots:
            return
        real = os.path.realpath(path)
        for root in self.allowed_roots:
            base = os.path.realpath(os.path.expanduser(root))
            if real == base or real.startswith(base.rstrip("/") + "/"):
                return
        raise denied(
            "allowed_roots",
            f"{field}: {path!r} (resolved to {real!r}) is outside the allowed roots {self.allowed_roots}",
            field=field,
            value=path,
        )

    def check_command(self, field: str, command: str | list[str]) -> None:
        """``deny_commands`` and ``allow_commands``, matched against the program and the whole command."""
        if not (self.allow_commands or self.deny_commands):
            return
        names = command_names(command)
        for pattern in self.deny_commands:
            if any(fnmatch.fnmatchcase(name, pattern) for name in names):
                raise denied(
                    "deny_commands",
                    f"{field}: {command!r} matches the denied pattern {pattern!r}",
                    field=field,
                    value=command,
                    pattern=pattern,
                )
        if self.allow_commands and not any(
            fnmatch.fnmatchcase(name, pattern) for name in names for pattern in self.allow_commands
        ):
            raise denied(
                "allow_commands",
                f"{field}: {command!r} matches none of the allowed patterns {self.allow_commands}",
                field=field,
                value=command,
            )

    def check_backend(self, backend: str, partition: str | None) -> None:
        """``backends`` and ``slurm_partitions``: where a job is to run."""
        if self.backends is not None and backend not in self.backends:
            raise denied(
                "backends",
                f"backend: {backend!r} is not offered; allowed: {self.backends}",
                field="backend",
                value=backend,
            )
        if backend == "slurm" and self.slurm_partitions is not None and partition not in self.slurm_partitions:
            given = "no partition was given" if partition is None else f"{partition!r} is not allowed"
            raise denied(
                "slurm_partitions",
                f"slurm.partition: {given}; allowed: {self.slurm_partitions}",
                field="slurm.partition",
                value=partition,
            )

    def job_environ(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``pass_env``: the part of the server's environment its jobs and notify commands inherit.

        The server's secrets never pass, whatever the patterns say.
        """
        return {
            name: value
            for name, value in environ.items()
            if name not in SERVER_SECRETS
            and (self.pass_env is None or any(fnmatch.fnmatchcase(name, p) for p in self.pass_env))
        }


def denied(rule: str, message: str, **details: Any) -> JobError:
    """A ``policy_denied`` refusal; ``details.rule`` is the policy field that refused."""
    return JobError("policy_denied", f"policy {rule}: {message}", details={"rule": rule, **details})


def command_names(command: str | list[str]) -> list[str]:
    """What command patterns are matched against: the program (as given and its basename) and the
    whole command (``shlex.join`` of an argv). For a shell string the program is its first word."""
    if isinstance(command, list):
        program, whole = command[0], shlex.join(command)
    else:
        try:
            words = shlex.split(command)
        except ValueError:  # unbalanced quotes: the shell will refuse it, the split must not
            words = command.split()
        program, whole = (words[0] if words else ""), command
    return _unique([program, os.path.basename(program), whole])


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))
