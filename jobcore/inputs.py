"""The inputs of every operation, validated strictly.

Wrong types, unknown fields, explicit nulls and out-of-range values are refused here, before
anything touches the disk or the store is searched; :func:`parse` turns pydantic's error into
an ``invalid_input`` that names the field and the value (never the value of a secret field).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .cursor import decode as decode_cursor
from .errors import invalid_input
from .payloads import JobState
from .slurm.options import refused_arg

T = TypeVar("T", bound=BaseModel)

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TAG = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_TAG_FILTER = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?:\.\*)?")

JobIdStr = Annotated[str, Field(description="Id, or a prefix of 4+ chars.")]
#: Longest duration accepted (about 31 years): far beyond any real job, and small enough that
#: every deadline computed from it stays a finite float and a representable millisecond count.
MAX_SECONDS = 10**9
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
NonEmptyStr = Annotated[str, Field(min_length=1)]

SIGNALS = ("SIGTERM", "SIGINT", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
DEFAULT_MAX_BYTES = 65536
#: The most bytes of each log one call returns; a larger ``max_bytes`` is lowered to it.
MAX_BYTES_CAP = 1 << 20
#: Fields whose values may be secrets: an error names them but never shows their value.
SECRET_FIELDS = frozenset({"env", "stdin"})


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


def _has_lone_surrogate(text: str) -> bool:
    """A lone UTF-16 surrogate: valid in a Python string, not encodable as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _string_problem(text: str) -> str | None:
    if "\0" in text:
        return "contains a NUL byte"
    if _has_lone_surrogate(text):
        return "contains a lone surrogate (not valid Unicode text)"
    return None


def _label(key: object) -> str:
    """A key as shown in a field path: ASCII, so a message naming it can always be written out."""
    text = str(key)
    return text if text.isascii() and text.isprintable() else ascii(text)


def _bad_value_at(value: Any, path: str) -> tuple[str, str] | None:
    """The first (field path, problem) of a value nothing downstream can take, or None.

    A NUL byte reaches neither exec nor the file system, a lone surrogate cannot be encoded,
    and an explicit null is not in any tool's schema: all are refused at any depth, in keys too.
    """
    if value is None:
        return path or "input", "null is not allowed; leave the field out"
    if isinstance(value, str):
        problem = _string_problem(value)
        return (path or "input", problem) if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{_label(key)}" if path else _label(key)
            if isinstance(key, str) and (problem := _string_problem(key)):
                return where, f"key {problem}"
            if found := _bad_value_at(item, where):
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := _bad_value_at(item, f"{path}.{index}"):
                return found
    return None


def _check_tags(tags: list[str]) -> list[str]:
    out: list[str] = []
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise ValueError(f"bad tag {tag!r}: dot-separated segments of letters, digits and '-'")
        if tag not in out:
            out.append(tag)
    return out


class _LineMatch(_Input):
    """A line pattern: what a trigger and an ``until`` share, the regex checked to compile."""

    pattern: NonEmptyStr
    match_type: Literal["contains", "regex"] = "contains"
    stream: Literal["stdout", "stderr", "either"] = "either"

    @model_validator(mode="after")
    def _regex_compiles(self) -> _LineMatch:
        if self.match_type == "regex":
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"bad regex {self.pattern!r}: {exc}") from None
        return self


class OutputMatch(_LineMatch):
    """A trigger: every new complete output line that matches emits a ``job.output.matched`` event."""

    notify_command: NonEmptyStr | None = Field(None, description="Run per event (event on stdin).")
    notify_file: NonEmptyStr | None = Field(None, description="Events appended here (JSON lines).")


#: A Slurm name or quantity (partition, account, memory, gres): no spaces, not an option.
_SLURM_WORD = re.compile(r"[A-Za-z0-9_.:,=+/-]+")
#: Slurm's --time formats: minutes, [days-]hours:minutes:seconds and their shorter forms.
_SLURM_TIME = re.compile(r"\d+(?::\d+){0,2}|\d+-\d+(?::\d+){0,2}|UNLIMITED|INFINITE")


class SlurmOptions(_Input):
    """How a Slurm job is submitted: each field is an sbatch option (see docs/slurm.md)."""

    partition: str | None = None
    time_limit: str | None = None
    cpus: int | None = Field(None, ge=1)
    mem: str | None = None
    gres: str | None = None
    account: str | None = None
    extra_args: list[str] = Field(default_factory=list, description="As --name=value.")

    @field_validator("partition", "mem", "gres", "account")
    @classmethod
    def _word(cls, v: str | None) -> str | None:
        if v is not None and (v.startswith("-") or not _SLURM_WORD.fullmatch(v)):
            raise ValueError(f"{v!r} is not a Slurm name or quantity")
        return v

    @field_validator("time_limit")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is not None and not _SLURM_TIME.fullmatch(v):
            raise ValueError(f"{v!r} is not a Slurm time (minutes, or [days-]hours:minutes:seconds)")
        return v

    @field_validator("extra_args")
    @classmethod
    def _extra_args(cls, v: list[str]) -> list[str]:
        for arg in v:
            if problem := refused_arg(arg):
                raise ValueError(f"{arg!r} {problem}")
        return v


class JobSpec(_Input):
    """What a job runs: the definition persisted in ``meta.json``."""

    command: str | list[NonEmptyStr] = Field(description="Shell string or argv array.")
    cwd: str | None = Field(None, description="Default: the server's.")
    env: dict[str, str] | None = Field(None, description="Over the inherited ones.")
    env_files: list[NonEmptyStr] = Field(default_factory=list, description="KEY=VALUE files, read at start.")
    inherit_env: bool = Field(True, description="Inherit the server's env.")
    mask: list[str] = Field(default_factory=list, description="env keys shown as ***.")
    stdin: str | None = Field(None, description="Text given on stdin.")
    stdin_file: str | None = Field(None, description="File given on stdin.")
    timeout: Seconds = Field(0, description="Seconds before SIGTERM (0 = none).")
    kill_after: Seconds = Field(5, description="Seconds from SIGTERM to SIGKILL.")
    tags: list[str] = Field(default_factory=list, description="Labels, e.g. 'ci'.")
    shell_wrapper: list[NonEmptyStr] | None = Field(
        None, min_length=1, description="argv for a string command (default sh -c)."
    )
    notify_command: NonEmptyStr | None = Field(None, description="Run at the end (event on stdin).")
    notify_file: NonEmptyStr | None = Field(None, description="The end event is appended here.")
    on_output_match: OutputMatch | None = Field(None, description="An event per matching line.")
    idempotency_key: str | None = Field(
        None,
        pattern=r"^[ -~]{1,128}$",
        description="A repeat gets the first call's job.",
    )
    backend: Literal["local", "slurm"] | None = Field(None, description="Default: the server's.")
    slurm: SlurmOptions | None = Field(None, description="sbatch options.")

    def definition(self) -> dict[str, Any]:
        """The job's definition: every field of the spec but the key itself and a call's watch options."""
        return self.model_dump(mode="json", include=set(JobSpec.model_fields) - {"idempotency_key"})

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, v: str | list[str]) -> str | list[str]:
        if (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and not v):
            raise ValueError("command is empty")
        return v

    @field_validator("env")
    @classmethod
    def _env_keys(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key in v or {}:
            if not _ENV_KEY.fullmatch(key):
                raise ValueError(f"bad env key {key!r}: letters, digits and '_', not starting with a digit")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        return _check_tags(v)


class Until(_LineMatch):
    """Return as soon as a complete output line matches (lines already written count)."""


class WatchOptions(_Input):
    """How long a call watches the job and how much output it returns."""

    wait_seconds: Seconds | None = Field(None, description="Longest time this call waits for the job to end.")
    tail_lines: int = Field(50, ge=0, description="Last lines per log (0 = all).")
    max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=0, description=f"Most bytes per log (cap {MAX_BYTES_CAP}).")


class JobRef(_Input):
    job_id: JobIdStr


class WatchInput(JobRef, WatchOptions):
    """A job to watch, and how: the input of restart."""


class StartInput(WatchInput):
    until: Until | None = Field(None, description="Return at a matching line.")


class RunInput(JobSpec, WatchOptions):
    until: Until | None = Field(None, description="Return at a matching line.")


#: Most jobs one wait or kill may name.
MAX_JOB_IDS = 100


class ManyJobs(_Input):
    """Exactly one of job_id, job_ids or tags: the jobs a wait or kill is about."""

    job_id: JobIdStr | None = None
    job_ids: list[str] | None = Field(None, min_length=1, max_length=MAX_JOB_IDS, description="Ids or prefixes.")
    tags: list[str] | None = Field(None, min_length=1, description="All these tags, any cwd.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ManyJobs:
        given = [name for name in ("job_id", "job_ids", "tags") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of job_id, job_ids, tags (got {', '.join(given) or 'none'})")
        return self

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _check_tags(v)


class WaitInput(ManyJobs, WatchOptions):
    until: Until | None = Field(None, description="Return at a matching line.")
    mode: Literal["any", "all"] = Field("any", description="any: first end; all: every end.")


class SnapshotInput(JobRef):
    tail_lines: int = Field(50, ge=0, description="Last lines per log (0 = all).")
    head_lines: int = Field(0, ge=0, description="Also first lines (stdout_head, stderr_head).")
    max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=0, description=f"Most bytes per log (cap {MAX_BYTES_CAP}).")
    stdout_offset: int | None = Field(None, ge=0, description="Read stdout from this byte offset.")
    stderr_offset: int | None = Field(None, ge=0, description="Read stderr from this byte offset.")


class SearchInput(JobRef):
    pattern: NonEmptyStr = Field(description="Text, or a Python regex.")
    match_type: Literal["contains", "regex"] = Field("contains", description="How pattern is matched, per line.")
    ignore_case: bool = Field(False, description="Case-insensitive.")
    stream: Literal["stdout", "stderr", "either"] = Field("either", description="Log(s) searched; stdout first.")
    context_lines: int = Field(3, ge=0, le=50, description="Lines around each match.")
    max_matches: int = Field(20, ge=1, le=200, description="Most matches returned.")
    stdout_offset: int = Field(0, ge=0, description="Start offset in stdout.")
    stderr_offset: int = Field(0, ge=0, description="Start offset in stderr.")


class KillInput(ManyJobs):
    signal: str = Field("SIGTERM", description="SIGTERM, SIGINT, SIGKILL, SIGHUP, SIGQUIT, SIGUSR1/2.")
    wait_seconds: Seconds | None = Field(None, description="Longest time to observe the end.")

    @field_validator("signal")
    @classmethod
    def _signal(cls, v: str) -> str:
        # ASCII only: str.upper() maps other letters onto ASCII ones ("\u017f".upper() == "S").
        name = v.upper() if v.isascii() else v
        name = name if name.startswith("SIG") else "SIG" + name
        if name not in SIGNALS:
            raise ValueError(f"unsupported signal {v!r}; one of {', '.join(SIGNALS)}")
        return name


class ListInput(_Input):
    state: JobState | None = None
    tags: list[str] = Field(default_factory=list, description="All must match; 'a.*' matches a and a.anything.")
    cwd: str | None = Field(None, description="Jobs under this folder.")
    all: bool = Field(False, description="List every job, whatever its cwd.")
    limit: int = Field(50, ge=0, description="Most jobs returned (0 = no limit).")
    cursor: str | None = Field(None, description="A page's next_cursor: the jobs after it.")

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, v: str | None) -> str | None:
        if v is not None:
            decode_cursor(v)
        return v

    @field_validator("tags")
    @classmethod
    def _tag_filters(cls, v: list[str]) -> list[str]:
        for tag in v:
            if not _TAG_FILTER.fullmatch(tag):
                raise ValueError(f"bad tag filter {tag!r}")
        return v


class DeleteInput(_Input):
    job_id: JobIdStr | None = None
    finished_older_than: str | None = Field(None, description="Age such as 7d, 12h, 45m, 90s.")
    dry_run: bool = False


class TagInput(JobRef):
    tags: list[str]

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        return _check_tags(v)


def _is_union_branch(part: object) -> bool:
    return isinstance(part, str) and (part in {"str", "int", "float", "bool"} or "[" in part)


def _shown(loc: tuple[int | str, ...], value: Any) -> str:
    """`` (got <value>)`` for an error message, or nothing when the value may be a secret."""
    if not loc or loc[0] in SECRET_FIELDS:
        return ""
    shown = repr(value)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return f" (got {shown})"


def parse(model: type[T], data: Any) -> T:
    """Validate ``data`` into ``model``, or raise ``invalid_input`` naming the field and value."""
    if found := _bad_value_at(data, ""):
        where, problem = found
        raise invalid_input(f"{where}: {problem}", field=where)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # With unions pydantic reports one error per branch: the deepest one is the telling one.
        err = max(exc.errors(include_url=False), key=lambda e: len(e["loc"]))
        field = ".".join(_label(p) for p in err["loc"] if not _is_union_branch(p)) or "input"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        if err["type"] == "missing":
            raise invalid_input(f"{field}: required field is missing", field=field) from None
        raise invalid_input(f"{field}: {msg}{_shown(err['loc'], err.get('input'))}", field=field) from None
