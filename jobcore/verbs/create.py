"""create: define a job without starting it; a refused definition creates nothing."""

from __future__ import annotations

import os
import shutil
import stat
import time
from typing import Any

from ..errors import JobError, invalid_input
from ..idempotency import job_for_key
from ..inputs import JobSpec, SlurmOptions
from ..payloads import CreatePayload
from ..slurm import jobfile
from ..store import FILE_MODE, JobDir, new_job_id
from ..supervisor import fsio, records
from ._context import Context
from ._launching import check_definition, check_shared
from ._observe import ms

STDIN_MAX_BYTES = 64 * 1024 * 1024
_CREATE_ID_TRIES = 16


def create(ctx: Context, spec: JobSpec) -> CreatePayload:
    jd, existing = keyed_job(ctx, spec)
    return CreatePayload(
        job_id=jd.job_id,
        state=records.status(jd.observed_state()) if existing else "created",
        existing=existing or None,
        stdout_log_path=jd.stdout_path,
        stderr_log_path=jd.stderr_path,
        full_log_path=jd.full_path,
    )


def keyed_job(ctx: Context, spec: JobSpec, *, launching: bool = False) -> tuple[JobDir, bool]:
    """A new job, or, when ``idempotency_key`` names one already made, that job and True.

    ``launching``: the caller launches a new job at once, and a local one's supervisor makes
    its definition durable right after the command starts, off the path to the command's
    first instruction. A keyed job's definition is made durable here: its marker, fsynced
    before the launch, must never name a job that a crash could lose.
    """
    if spec.idempotency_key is None:
        return new_job(ctx, spec, launching=launching), False
    checked = _checked(ctx, spec)  # before the key's marker is touched: a refused call creates nothing
    return job_for_key(ctx.store, spec.idempotency_key, spec.definition(), lambda: _write(ctx, *checked))


def check_cwd(cwd: str | None) -> str:
    """``cwd`` as an existing real directory (default: the server's working directory)."""
    path = os.path.realpath(os.path.expanduser(cwd) if cwd is not None else os.getcwd())
    if not os.path.isdir(path):
        raise invalid_input(f"cwd: {cwd!r} is not an existing directory", field="cwd")
    return path


def new_job(ctx: Context, spec: JobSpec, *, launching: bool = False) -> JobDir:
    """The job's directory, in state ``created``; everything is validated first, so a refused call creates nothing."""
    return _write(ctx, *_checked(ctx, spec), launching=launching)


def _checked(ctx: Context, spec: JobSpec) -> tuple[dict[str, Any], bytes | None, dict[str, str]]:
    """The job's meta record, stdin and env, once every check has passed; nothing is written yet."""
    cwd = check_cwd(spec.cwd)
    env_files = [_resolve(cwd, p) for p in spec.env_files]
    stdin_file = None if spec.stdin_file is None else _resolve(cwd, spec.stdin_file)
    env = spec.env or {}
    meta = records.meta_record(
        "",  # the id is set once the job's directory exists, after every check
        command=spec.command,
        cwd=cwd,
        created_at=fsio.now_rfc3339(),
        # Orders jobs created within one millisecond (created_at has ms resolution).
        created_ns=time.time_ns(),
        env_keys=list(env),
        env_vars=[f"{k}={'***' if k in spec.mask else v}" for k, v in env.items()],
        mask=spec.mask,
        inherit_env=spec.inherit_env,
        env_files=env_files,
        timeout_ms=ms(spec.timeout),
        kill_after_ms=ms(spec.kill_after),
        tags=spec.tags,
        shell_wrapper=spec.shell_wrapper,
        notification=_notification(spec, cwd),
    )
    _set_backend(ctx, spec, meta)
    check_definition(ctx.policy, meta)
    if stdin_file is not None:
        ctx.policy.check_path("stdin_file", stdin_file)
    for path in env_files:
        os.close(_open_regular_file("env_files", path))  # read at start, by the supervisor
    stdin = _read_stdin(spec, stdin_file)
    if stdin is not None:
        meta["stdin_file"] = fsio.STDIN
    if "slurm" in meta:
        check_shared(ctx, meta["slurm"])  # last: it may submit a probe job
    return meta, stdin, env


def _set_backend(ctx: Context, spec: JobSpec, meta: dict[str, Any]) -> None:
    """A Slurm job's ``backend`` and ``slurm`` options in its meta record (a local job's has neither)."""
    backend = spec.backend or ctx.backend
    if backend != "slurm":
        if spec.slurm is not None:
            raise invalid_input(f"slurm: options given for backend {backend!r}; set backend to 'slurm'", field="slurm")
        return
    meta["backend"] = "slurm"
    meta["slurm"] = (spec.slurm or SlurmOptions()).model_dump(exclude_defaults=True)


def _write(
    ctx: Context, meta: dict[str, Any], stdin: bytes | None, env: dict[str, str], *, launching: bool = False
) -> JobDir:
    # A Slurm job's supervisor may start long after the call: its definition is durable at once.
    durable = not launching or "slurm" in meta
    jd = _new_dir(ctx)
    try:
        meta["job"]["id"] = jd.job_id
        if stdin is not None:
            fd = os.open(jd.file(fsio.STDIN), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            with os.fdopen(fd, "wb") as f:
                f.write(stdin)
        if env:
            fsio.write_json_atomic(jd.file(fsio.ENV), env, mode=FILE_MODE)
        jd.write_meta(meta, durable=durable)
        if durable:
            fsio.sync_dir(str(jd.root))  # the job's directory itself, in the root
        jd.empty_logs()
        os.mkfifo(jd.file(fsio.WAKE_FIFO), FILE_MODE)
        if "slurm" in meta:
            jobfile.write(jd.path, {})  # a Slurm job's from the start; its id comes once submitted
        jd.write_state("created")
    except OSError as exc:
        shutil.rmtree(jd.path, ignore_errors=True)
        raise JobError("io_error", f"cannot write job {jd.job_id}: {exc}", retryable=True) from None
    return jd


def _new_dir(ctx: Context) -> JobDir:
    ctx.store.prepare()
    try:
        for _ in range(_CREATE_ID_TRIES):
            jd = JobDir(ctx.store.root, new_job_id())
            try:
                jd.path.mkdir(mode=0o700)
                return jd
            except FileExistsError:
                continue
    except OSError as exc:
        raise JobError("io_error", f"cannot create a job under {ctx.store.root}: {exc}", retryable=True) from None
    raise JobError("io_error", f"no free job id after {_CREATE_ID_TRIES} tries", retryable=True)


def _resolve(cwd: str, path: str) -> str:
    """A path input as an absolute path: ``~`` expanded, a relative one taken from the job's cwd."""
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))


def _open_regular_file(field: str, path: str) -> int:
    """A read descriptor of ``path``, refused at once unless it is a regular file.

    A FIFO or a device would block the read (or worse): it is seen by ``stat`` before any
    open, and the open itself does not block (O_NONBLOCK), so a file swapped in between is
    caught by ``fstat`` on the very descriptor that will be read.
    """

    def refuse(problem: str) -> JobError:
        return invalid_input(f"{field}: {path!r} {problem}", field=field, path=path)

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise refuse("is not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise refuse(f"cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refuse("is not a regular file")
    return fd


def _read_stdin(spec: JobSpec, stdin_file: str | None) -> bytes | None:
    if spec.stdin is not None and stdin_file is not None:
        raise invalid_input("give stdin or stdin_file, not both", field="stdin_file")
    if spec.stdin is not None:
        data = spec.stdin.encode()
    elif stdin_file is not None:
        fd = _open_regular_file("stdin_file", stdin_file)
        try:
            if os.fstat(fd).st_size > STDIN_MAX_BYTES:
                raise JobError(
                    "stdin_too_large",
                    f"stdin_file {stdin_file!r} is over {STDIN_MAX_BYTES} bytes",
                    details={"field": "stdin_file", "limit": STDIN_MAX_BYTES},
                )
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(STDIN_MAX_BYTES + 1)
        except OSError as exc:
            raise invalid_input(f"stdin_file: cannot read {stdin_file!r}: {exc.strerror}", field="stdin_file") from None
        finally:
            os.close(fd)
    else:
        return None
    if len(data) > STDIN_MAX_BYTES:
        raise JobError(
            "stdin_too_large",
            f"stdin is {len(data)} bytes, over the limit of {STDIN_MAX_BYTES}",
            details={"field": "stdin", "limit": STDIN_MAX_BYTES},
        )
    return data


def _notification(spec: JobSpec, cwd: str) -> dict[str, Any]:
    """The sinks of ``meta.json``; relative file paths are taken from the job's cwd."""

    def sinks(command: str | None, file: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if command is not None:
            out["notify_command"] = command
        if file is not None:
            out["notify_file"] = _resolve(cwd, file)
        return out

    notification = sinks(spec.notify_command, spec.notify_file)
    if (trigger := spec.on_output_match) is not None:
        notification["on_output_match"] = {
            "pattern": trigger.pattern,
            "match_type": trigger.match_type,
            "stream": trigger.stream,
            **sinks(trigger.notify_command, trigger.notify_file),
        }
    return notification
