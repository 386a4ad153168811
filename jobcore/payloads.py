"""The payloads: what every operation returns.

Optional fields are left out of the JSON, never null: dump with :meth:`Payload.to_dict`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .supervisor.records import SCHEMA_VERSION

#: The states of :data:`records.JOB_STATES` (a Literal cannot be built from the tuple).
JobState = Literal["created", "queued", "running", "exited", "killed", "failed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Payload(_Model):
    schema_version: Literal["0.1"] = SCHEMA_VERSION
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, optional fields left out, the envelope keys first for people reading it."""
        data = self.model_dump(mode="json", exclude_none=True)
        head = {k: data.pop(k) for k in ("schema_version", "ok", "type", "job_id") if k in data}
        return head | data


class ErrorInfo(_Model):
    code: str
    message: str
    retryable: bool = False
    details: dict[str, Any] | None = None


class ErrorPayload(Payload):
    ok: bool = False
    type: Literal["error"] = "error"
    error: ErrorInfo


class Snapshot(_Model):
    """A window of each log: raw bytes ``[begin, end)`` decoded as lossy UTF-8."""

    stdout_tail: str
    stderr_tail: str
    truncated: bool
    encoding: Literal["utf-8-lossy"] = "utf-8-lossy"
    stdout_observed_bytes: int
    stderr_observed_bytes: int
    stdout_included_bytes: int
    stderr_included_bytes: int
    stdout_range: tuple[int, int]
    stderr_range: tuple[int, int]
    #: The first lines of each log, when ``head_lines`` asked for them.
    stdout_head: str | None = None
    stderr_head: str | None = None
    #: The windows were made smaller than asked so the payload fits the budget (docs/payloads.md).
    cut_to_fit: bool | None = None


class Events(_Model):
    """Output-trigger events so far."""

    matched: int
    last_line: str | None = None
    #: Where ``last_line`` is: its number in its stream (from 1) and the byte offset of its start.
    line_number: int | None = None
    offset: int | None = None
    #: Events whose notify command was not run because too many were queued.
    undelivered: int | None = None
    #: Why the trigger was turned off for this job (its pattern ran too long), once it was.
    disabled: str | None = None


class LineMatch(_Model):
    """The first complete output line that matched ``until``."""

    stream: Literal["stdout", "stderr"]
    line: str
    #: Counted from 1 in its stream.
    line_number: int
    #: The byte offset of the line's start in its stream's log.
    offset: int


class JobEnd(_Model):
    """One job of a wait or kill on several jobs."""

    job_id: str
    state: JobState
    exit_code: int | None = None
    signal: str | None = None
    reason: str | None = None
    finished_at: str | None = None
    #: With ``until``: this job's first matching line, or null.
    matched: LineMatch | None = None


class WriteErrors(_Model):
    """What the supervisor could not write (a full disk, a file-size limit); the job ran on."""

    #: Bytes of output not copied to full.log (stdout.log and stderr.log have them all).
    full_log_bytes: int
    #: Event and trigger-counter writes that failed.
    events: int
    #: The last failure, as ``<strerror>: <path>``.
    last_error: str


class SlurmInfo(_Model):
    """A Slurm job's id in Slurm and, where asked, Slurm's state and pending reason (docs/slurm.md)."""

    #: Slurm's job id (absent while sbatch has not answered, or before the job is started).
    job_id: str | None = None
    #: Slurm's state, e.g. PENDING, RUNNING, COMPLETED.
    state: str | None = None
    #: Why Slurm keeps it waiting, e.g. Resources, Priority, JobHeldUser.
    reason: str | None = None


class _Backend(_Model):
    #: ``slurm`` for a job run on Slurm; absent for a local job.
    backend: Literal["slurm"] | None = None
    slurm: SlurmInfo | None = None


class CreatePayload(Payload):
    type: Literal["create"] = "create"
    job_id: str
    #: ``created``, or the current state of the job an ``idempotency_key`` named.
    state: JobState = "created"
    #: The ``idempotency_key`` named a job made before: this is that job, nothing new was made.
    existing: bool | None = None
    stdout_log_path: str
    stderr_log_path: str
    full_log_path: str


class _Lowered(_Model):
    #: Inputs lowered to their cap (field -> the value applied); present only when one was.
    lowered_to: dict[str, int | float] | None = None


class _EndFields(_Model):
    exit_code: int | None = None
    signal: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    reason: str | None = None
    #: Present when the supervisor could not write something; not an end field, but
    #: reported wherever the end fields are.
    write_errors: WriteErrors | None = None


class LaunchPayload(Payload, _Backend, _EndFields, _Lowered):
    """``run``, ``start`` and ``restart``: the launch, then what was observed until it ended or the deadline."""

    type: Literal["run", "start", "restart"]
    job_id: str
    state: JobState
    tags: list[str]
    env_vars: list[str] | None = None
    stdout_log_path: str
    stderr_log_path: str
    waited_ms: int
    elapsed_ms: int
    snapshot: Snapshot | None = None
    final_snapshot: Snapshot | None = None
    #: The ``idempotency_key`` named a job run before: this watched that job, nothing was started.
    existing: bool | None = None
    events: Events | None = None
    #: With ``until``: the first matching line, or null.
    matched: LineMatch | None = None


class SnapshotPayload(Payload, _Backend, _EndFields, _Lowered):
    type: Literal["snapshot"] = "snapshot"
    job_id: str
    state: JobState
    command: str | list[str]
    cwd: str
    tags: list[str]
    created_at: str
    started_at: str | None = None
    updated_at: str
    stdout_log_path: str
    stderr_log_path: str
    full_log_path: str
    events: Events | None = None
    snapshot: Snapshot


class WaitPayload(Payload, _Backend, _EndFields, _Lowered):
    type: Literal["wait"] = "wait"
    #: The job of a wait on one ``job_id`` (null with ``job_ids`` or ``tags``).
    job_id: str | None = None
    state: JobState | None = None
    waited_ms: int
    timed_out: bool
    events: Events | None = None
    snapshot: Snapshot | None = None
    final_snapshot: Snapshot | None = None
    #: With ``until``: the first matching line, or null.
    matched: LineMatch | None = None
    #: With ``job_ids`` or ``tags``: one entry per job.
    jobs: list[JobEnd] | None = None
    #: With ``job_ids`` or ``tags``: the jobs that ended (or matched ``until``), first first.
    ended: list[str] | None = None


class Match(_Model):
    stream: Literal["stdout", "stderr"]
    #: Counted from 1 in its stream.
    line_number: int
    #: The byte offset of the line's start in its stream's log.
    offset: int
    line: str
    before: list[str]
    after: list[str]


class SearchPayload(Payload):
    type: Literal["search_output"] = "search_output"
    job_id: str
    state: JobState
    matches: list[Match]
    match_count: int
    #: More matches remain: search again from the next offsets.
    truncated: bool
    next_stdout_offset: int | None = None
    next_stderr_offset: int | None = None
    scanned_bytes: int


class KillPayload(Payload, _Backend, _Lowered):
    type: Literal["kill"] = "kill"
    #: The job of a kill of one ``job_id`` (null with ``job_ids`` or ``tags``).
    job_id: str | None = None
    #: The signal sent; the one that ended the job, if one did, is ``end_signal``.
    signal: str | None = None
    state: JobState | None = None
    #: The job had ended before the call: nothing of it was signalled but leftover descendants.
    already_ended: bool | None = None
    exit_code: int | None = None
    end_signal: str | None = None
    finished_at: str | None = None
    reason: str | None = None
    observed_within_ms: int
    #: With ``job_ids`` or ``tags``: one entry per job.
    jobs: list[JobEnd] | None = None


class ListEntry(_Backend):
    job_id: str
    state: JobState
    command: str | list[str]
    cwd: str
    tags: list[str]
    exit_code: int | None = None
    reason: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str


class ListPayload(Payload):
    type: Literal["list"] = "list"
    root: str
    jobs: list[ListEntry]
    truncated: bool
    #: Present when truncated: pass it as ``cursor`` for the next page.
    next_cursor: str | None = None
    skipped: int


class DeleteEntry(_Model):
    job_id: str
    state: str
    action: Literal["deleted", "would_delete", "skipped"]
    reason: str


class DeletePayload(Payload):
    type: Literal["delete"] = "delete"
    root: str
    dry_run: bool
    deleted: int
    skipped: int
    jobs: list[DeleteEntry]


class TagPayload(Payload):
    type: Literal["tag"] = "tag"
    job_id: str
    tags: list[str]
