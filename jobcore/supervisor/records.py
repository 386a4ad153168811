"""The records a job leaves on disk: their shapes, their constants, how they are built and read.

``meta.json`` (the definition), ``state.json`` (where the job is) and the events of
``completion_event.json`` and ``notification_events.ndjson`` are described in
``docs/records.md``; the engine and the supervisor build and read them only through here.

The types are for annotations alone: ``typing`` is not imported at run time, so the
supervisor's start-up does not pay for it (users write ``from __future__ import annotations``).
"""

from __future__ import annotations

from . import fsio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NotRequired, TypedDict

    class JobPart(TypedDict):
        id: str
        status: str
        started_at: NotRequired[str]

    class ResultPart(TypedDict):
        exit_code: int | None
        signal: str | None
        duration_ms: int | None

    class WriteErrors(TypedDict):
        """What the supervisor could not write (see ``docs/records.md``)."""

        full_log_bytes: int
        events: int
        last_error: str

    class StateRecord(TypedDict):
        """``state.json``: optional keys are left out, never null."""

        job: JobPart
        result: ResultPart
        pid: NotRequired[int]
        supervisor_pid: NotRequired[int]
        finished_at: NotRequired[str]
        updated_at: str
        reason: NotRequired[str]
        write_errors: NotRequired[WriteErrors]
        supervisor: NotRequired[str]

    class MetaJobPart(TypedDict):
        id: str

    class TriggerSpec(TypedDict):
        pattern: str
        match_type: str
        stream: str
        notify_command: NotRequired[str]
        notify_file: NotRequired[str]

    class Notification(TypedDict, total=False):
        notify_command: str
        notify_file: str
        on_output_match: TriggerSpec

    class MetaRecord(TypedDict):
        """``meta.json``: the job's definition, written once at creation."""

        job: MetaJobPart
        schema_version: str
        command: str | list[str]
        cwd: str
        created_at: str
        created_ns: int
        env_keys: list[str]
        env_vars: list[str]
        mask: list[str]
        inherit_env: bool
        env_files: list[str]
        timeout_ms: int
        kill_after_ms: int
        tags: list[str]
        shell_wrapper: list[str]
        notification: NotRequired[Notification]
        stdin_file: NotRequired[str]
        backend: NotRequired[str]
        slurm: NotRequired[dict[str, Any]]

    class DeliveryResult(TypedDict):
        sink: str
        target: str
        ok: bool
        at: str
        error: NotRequired[str]

    class EventBase(TypedDict):
        schema_version: str
        event_type: str
        job_id: str
        command: str | list[str]
        cwd: str
        stdout_log_path: str
        stderr_log_path: str
        full_log_path: str

    class FinishedEvent(EventBase):
        """``job.finished``, in ``completion_event.json``."""

        state: str
        started_at: str | None
        finished_at: str | None
        duration_ms: int | None
        exit_code: NotRequired[int]
        signal: NotRequired[str]
        reason: NotRequired[str]
        delivery_results: list[DeliveryResult]

    class TriggerEvent(EventBase):
        """``job.output.matched``, a line of ``notification_events.ndjson``."""

        seq: int
        pattern: str
        match_type: str
        stream: str
        line: str
        line_number: int
        offset: int
        delivery_results: list[DeliveryResult]

    class TriggerDisabledEvent(EventBase):
        """``job.trigger.disabled``, a line of ``notification_events.ndjson``."""

        pattern: str
        match_type: str
        reason: str
        matched: int
        at: str

    class TriggerCounters(TypedDict):
        """``triggers.json``."""

        matched: int
        undelivered: int
        last_line: NotRequired[str]
        line_number: NotRequired[int]
        offset: NotRequired[int]
        disabled: NotRequired[str]

    Event = FinishedEvent | TriggerEvent | TriggerDisabledEvent


SCHEMA_VERSION = "0.1"
#: What runs a command given as a string, unless the job names its own wrapper.
DEFAULT_SHELL_WRAPPER = ("sh", "-c")
JOB_STATES = ("created", "queued", "running", "exited", "killed", "failed")
TERMINAL_STATES = frozenset({"exited", "killed", "failed"})

#: Set in every command's environment; descendants inherit it, also those that leave the
#: job's process group with setsid, so ``kill`` can still find them.
MARKER_VAR = "AGENT_JOBS_JOB_ID"
#: Set only in the environment of notify commands: the type of the event they deliver.
SINK_VAR = "AGENT_JOBS_EVENT_TYPE"
#: Set only in the environment of notify commands: the file holding the event.
EVENT_PATH_VAR = "AGENT_JOBS_EVENT_PATH"
#: ``snapshot`` and ``wait`` carry the last matched line: at most this many characters of it.
LAST_LINE_CHARS = 4096


# --- state.json ----------------------------------------------------------------------------


def state_record(
    job_id: str,
    status: str,
    *,
    started_at: str | None = None,
    exit_code: int | None = None,
    signal_name: str | None = None,
    duration_ms: int | None = None,
    pid: int | None = None,
    supervisor_pid: int | None = None,
    finished_at: str | None = None,
    reason: str | None = None,
    write_errors: WriteErrors | None = None,
    supervisor: str | None = None,
) -> StateRecord:
    """The ``state.json`` document: optional keys are left out, never null."""
    job: JobPart = {"id": job_id, "status": status}
    if started_at is not None:
        job["started_at"] = started_at
    record: Any = {
        "job": job,
        "result": {"exit_code": exit_code, "signal": signal_name, "duration_ms": duration_ms},
    }
    if pid is not None:
        record["pid"] = pid
    if supervisor_pid is not None:
        record["supervisor_pid"] = supervisor_pid
    if finished_at is not None:
        record["finished_at"] = finished_at
    record["updated_at"] = fsio.now_rfc3339()
    if reason is not None:
        record["reason"] = reason
    if write_errors is not None:
        record["write_errors"] = write_errors
    if supervisor is not None:
        record["supervisor"] = supervisor
    return record


def status(state: StateRecord) -> str:
    return state["job"]["status"]


def is_ended(state: StateRecord) -> bool:
    return state["job"]["status"] in TERMINAL_STATES


def started_at(state: StateRecord) -> str | None:
    return state["job"].get("started_at")


def exit_code(state: StateRecord) -> int | None:
    return state.get("result", {}).get("exit_code")


def end_fields(state: StateRecord) -> dict[str, Any]:
    """Exit code, signal, finish time, duration, reason and write errors, as the payloads name them."""
    result: Any = state.get("result", {})
    return {
        "exit_code": result.get("exit_code"),
        "signal": result.get("signal"),
        "finished_at": state.get("finished_at"),
        "duration_ms": result.get("duration_ms"),
        "reason": state.get("reason"),
        "write_errors": state.get("write_errors"),
    }


# --- meta.json -----------------------------------------------------------------------------


def meta_record(
    job_id: str,
    *,
    command: str | list[str],
    cwd: str,
    created_at: str,
    created_ns: int,
    env_keys: list[str],
    env_vars: list[str],
    mask: list[str],
    inherit_env: bool,
    env_files: list[str],
    timeout_ms: int,
    kill_after_ms: int,
    tags: list[str],
    shell_wrapper: list[str] | None,
    notification: Notification | None = None,
) -> MetaRecord:
    """The ``meta.json`` document; ``shell_wrapper`` None is the default wrapper."""
    meta: MetaRecord = {
        "job": {"id": job_id},
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "cwd": cwd,
        "created_at": created_at,
        "created_ns": created_ns,
        "env_keys": env_keys,
        "env_vars": env_vars,
        "mask": mask,
        "inherit_env": inherit_env,
        "env_files": env_files,
        "timeout_ms": timeout_ms,
        "kill_after_ms": kill_after_ms,
        "tags": tags,
        "shell_wrapper": shell_wrapper or list(DEFAULT_SHELL_WRAPPER),
    }
    if notification:
        meta["notification"] = notification
    return meta


def meta_job_id(meta: MetaRecord) -> str:
    return meta["job"]["id"]


def shell_argv(meta: MetaRecord) -> list[str]:
    """The argv that runs the job's command: a string goes through its shell wrapper."""
    command = meta["command"]
    if isinstance(command, str):
        return [*(meta.get("shell_wrapper") or DEFAULT_SHELL_WRAPPER), command]
    return list(command)


def wrapper(meta: MetaRecord) -> list[str]:
    """The shell wrapper notify commands run under: the job's own."""
    return list(meta.get("shell_wrapper") or DEFAULT_SHELL_WRAPPER)


# --- events --------------------------------------------------------------------------------


def event_base(meta: MetaRecord, event_type: str, job_dir: str) -> EventBase:
    """What every event of the job carries (``job_dir`` absolute, as the supervisor has it)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "event_type": event_type,
        "job_id": meta["job"]["id"],
        "command": meta["command"],
        "cwd": meta["cwd"],
        "stdout_log_path": f"{job_dir}/{fsio.STDOUT}",
        "stderr_log_path": f"{job_dir}/{fsio.STDERR}",
        "full_log_path": f"{job_dir}/{fsio.FULL}",
    }


def finished_event(meta: MetaRecord, job_dir: str, state: StateRecord) -> FinishedEvent:
    """``job.finished`` for the end ``state`` records."""
    event: Any = event_base(meta, "job.finished", job_dir)
    result: Any = state["result"]
    event.update(
        state=state["job"]["status"],
        started_at=state["job"].get("started_at"),
        finished_at=state.get("finished_at"),
        duration_ms=result.get("duration_ms"),
    )
    for key, value in (
        ("exit_code", result.get("exit_code")),
        ("signal", result.get("signal")),
        ("reason", state.get("reason")),
    ):
        if value is not None:
            event[key] = value
    event["delivery_results"] = []
    return event


def trigger_event(
    meta: MetaRecord,
    job_dir: str,
    seq: int,
    trigger: TriggerSpec,
    stream: str,
    line: str,
    line_number: int,
    offset: int,
) -> TriggerEvent:
    """``job.output.matched`` for the ``seq``-th line the trigger matched: line ``line_number``
    of its stream, starting at byte ``offset`` of its log."""
    event: Any = event_base(meta, "job.output.matched", job_dir)
    event.update(
        seq=seq,
        pattern=trigger["pattern"],
        match_type=trigger.get("match_type", "contains"),
        stream=stream,
        line=line,
        line_number=line_number,
        offset=offset,
        delivery_results=[],
    )
    return event


def trigger_disabled_event(
    meta: MetaRecord, job_dir: str, trigger: TriggerSpec, reason: str, matched: int
) -> TriggerDisabledEvent:
    """``job.trigger.disabled``: no more matching for this job, and why."""
    event: Any = event_base(meta, "job.trigger.disabled", job_dir)
    event.update(
        pattern=trigger["pattern"],
        match_type=trigger.get("match_type", "contains"),
        reason=reason,
        matched=matched,
        at=fsio.now_rfc3339(),
    )
    return event


def delivery_result(sink: str, target: str, error: str | None) -> DeliveryResult:
    result: DeliveryResult = {"sink": sink, "target": target, "ok": error is None, "at": fsio.now_rfc3339()}
    if error is not None:
        result["error"] = error
    return result


def without_results(event: Event) -> dict[str, Any]:
    """The event as its sinks get it: without the outcomes of its deliveries."""
    return {k: v for k, v in event.items() if k != "delivery_results"}


def trigger_counters(
    matched: int,
    undelivered: int,
    last_line: str | None,
    disabled: str | None,
    last_place: tuple[int, int] | None = None,
) -> TriggerCounters:
    """``triggers.json``; ``last_line`` is cut to :data:`LAST_LINE_CHARS` characters, ``last_place``
    is its (line number, byte offset)."""
    counters: TriggerCounters = {"matched": matched, "undelivered": undelivered}
    if last_line is not None:
        counters["last_line"] = last_line[:LAST_LINE_CHARS]
    if last_place is not None:
        counters["line_number"], counters["offset"] = last_place
    if disabled is not None:
        counters["disabled"] = disabled
    return counters
