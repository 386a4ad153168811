"""File-level helpers shared by the engine and the supervisor.

Standard library only: the supervisor imports this module under ``python -S``, so it must
not pull in the engine's package or anything heavy. That is why
JSON goes through ``_json``, the C half of the ``json`` package: importing ``json`` itself
brings ``re`` and ``enum`` and costs every launch ~4 ms.
"""

from __future__ import annotations

import _json
import itertools
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from . import records

META = "meta.json"
STATE = "state.json"
ENV = "env.json"
STDOUT = "stdout.log"
STDERR = "stderr.log"
FULL = "full.log"
STDIN = "stdin.bin"
ACK = "supervisor.ack"
KILL_REQUEST = "kill.json"
#: Written by the supervisor once it has signalled the job for a kill request.
KILL_SENT = "kill.sent"
WAKE_FIFO = "wake.fifo"
LOCK = "job.lock"
COMPLETION_EVENT = "completion_event.json"
NOTIFICATION_EVENTS = "notification_events.ndjson"
#: Trigger counters for readers: {matched, undelivered, last_line?}.
TRIGGERS = "triggers.json"
#: Files of one run, cleared by a restart.
RUN_FILES = (ACK, KILL_REQUEST, KILL_SENT, COMPLETION_EVENT, NOTIFICATION_EVENTS, TRIGGERS)


def now_rfc3339(epoch: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-28T06:00:00.123Z``."""
    t = time.time() if epoch is None else epoch
    ms = int(t * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


class _DecoderSettings:
    """What ``_json``'s scanner reads from a ``json.JSONDecoder``: the defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # "NaN", "Infinity", "-Infinity"
    memo: dict = {}  # noqa: RUF012 (read by the scanner, never written here)


_scan = _json.make_scanner(_DecoderSettings())
_WHITESPACE = " \t\n\r"


def loads(text: str) -> object:
    """``json.loads`` for a whole document, on the C scanner alone."""
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration:
        raise ValueError(f"no JSON value at character {start}") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"extra data after the JSON value at character {end}")
    return value


def dumps(value: object, indent: int | None = 2, _level: int = 0) -> str:
    """JSON text of dicts, lists, strings, numbers, booleans and None (non-ASCII escaped).

    With ``indent``, one item a line, as ``json.dumps(indent=...)``; with None, compact.
    """
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} has no JSON form")
        return float.__repr__(value)
    if isinstance(value, dict):
        items = [f"{_json.encode_basestring_ascii(str(k))}: {dumps(v, indent, _level + 1)}" for k, v in value.items()]
        return _join(items, "{", "}", indent, _level)
    if isinstance(value, list | tuple):
        return _join([dumps(v, indent, _level + 1) for v in value], "[", "]", indent, _level)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _join(items: list[str], opening: str, closing: str, indent: int | None, level: int) -> str:
    if not items:
        return opening + closing
    if indent is None:
        return opening + ", ".join(items) + closing
    inner = "\n" + " " * (indent * (level + 1))
    return opening + inner + ("," + inner).join(items) + "\n" + " " * (indent * level) + closing


_tmp_serial = itertools.count()


def write_json_atomic(path: str, data: object, mode: int = 0o600, *, durable: bool = False) -> None:
    """Write JSON to a temp file beside ``path`` and rename it over: readers never see a torn file.

    ``durable``: the file's data reaches the disk before the rename and the rename before we
    return, so the record survives an OS crash (see ``docs/records.md``); it costs two fsyncs.
    (Not ``tempfile``: importing it costs the supervisor 3 ms and 1.5 MB at every launch.)
    """
    head, slash, _ = path.rpartition("/")
    directory = head or slash
    tmp = f"{directory}/.tmp-{os.getpid()}-{next(_tmp_serial)}"
    view = memoryview((dumps(data) + "\n").encode())
    # Written with os.write, not a file object: its buffers cost a supervisor pages and time.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        sync_dir(directory)


def sync_dir(directory: str) -> None:
    """Make the directory's entries (a rename, a new file) reach the disk."""
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_definition(job_dir: str) -> None:
    """Make a job's ``meta.json`` durable where it was written without: its data, the job's
    directory, and that directory's entry in the store's root."""
    fd = os.open(f"{job_dir}/{META}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    sync_dir(job_dir)
    sync_dir(job_dir.rpartition("/")[0] or "/")


def describe(exc: OSError, path: str) -> str:
    """``No space left on device: /jobs/ab12/full.log``: an error as write_errors reports it."""
    return f"{exc.strerror or exc}: {exc.filename or path}"


class WriteErrorTally:
    """What the supervisor could not write, kept so that it can be reported rather than end
    supervision: bytes of ``full.log`` not copied, event and counter writes that failed."""

    def __init__(self) -> None:
        self.full_log_bytes = 0
        self.events = 0
        self.last_error: str | None = None

    def note(self, error: str, *, full_log_bytes: int = 0, event: bool = False) -> None:
        self.full_log_bytes += full_log_bytes
        self.events += event
        self.last_error = error

    @property
    def count(self) -> tuple[int, int]:
        """Changes whenever something more failed."""
        return self.full_log_bytes, self.events

    def as_record(self) -> records.WriteErrors | None:
        """The ``write_errors`` object of ``state.json``, or None when nothing failed."""
        if self.last_error is None:
            return None
        return {"full_log_bytes": self.full_log_bytes, "events": self.events, "last_error": self.last_error}


def find_program(name: str, env: Mapping[str, str]) -> str:
    """Resolve ``name`` on ``env``'s PATH (the command's own, not ours), as exec would."""
    if "/" in name:
        return name
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = f"{directory or '.'}/{name}"
        try:
            regular = os.stat(candidate).st_mode & 0o170000 == 0o100000
        except (OSError, ValueError):
            continue
        if regular and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(2, "No such file or directory", name)


def read_json(path: str) -> dict:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    value = loads(b"".join(chunks).decode())
    if not isinstance(value, dict):
        raise ValueError(f"{path}: not a JSON object")
    return value
