"""One function per command: build the verb's arguments, call :class:`jobcore.Jobs`, print the answer.

With ``--json`` a command prints exactly the payload (or error envelope) the matching MCP tool
returns; without it, words and tables for people (:mod:`.render`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from jobcore import SERVER_SECRETS, JobError, Jobs, Payload
from jobcore.inputs import MAX_BYTES_CAP, MAX_SECONDS

from . import render
from .exits import EXIT_ERROR, EXIT_OK, EXIT_TIMED_OUT, EXIT_USAGE, UsageError, guarded, report
from .follow import follow
from .render import Stream


def _print_json(payload: Payload) -> None:
    print(json.dumps(payload.to_dict(), ensure_ascii=False), flush=True)


def _forever(seconds: float | None) -> float:
    """A timeout as the engine takes it: none or infinite is its longest."""
    return MAX_SECONDS if seconds is None or seconds > MAX_SECONDS else seconds


def job_exit_code(exit_code: int | None, signal_name: str | None) -> int:
    """The job's own code, or 128 + the signal's number as a shell reports it."""
    if exit_code is not None:
        return exit_code
    if signal_name:
        try:
            return 128 + signal.Signals[signal_name].value
        except KeyError:
            pass
    return EXIT_ERROR


def _env_pairs(pairs: list[str]) -> dict[str, str] | None:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {pair!r}: give KEY=VALUE")
        env[key] = value
    return env or None


def _backend(args: argparse.Namespace) -> dict[str, Any]:
    """``backend`` and ``slurm`` from run's Slurm options; any of them implies ``--backend slurm``."""
    slurm = {
        name: value
        for name in ("partition", "time_limit", "cpus", "mem", "gres", "account")
        if (value := getattr(args, name)) is not None
    }
    if args.sbatch_arg:
        slurm["extra_args"] = args.sbatch_arg
    if args.backend == "local" and slurm:
        raise UsageError("Slurm options need --backend slurm (or no --backend)")
    if slurm:
        return {"backend": "slurm", "slurm": slurm}
    return {} if args.backend is None else {"backend": args.backend}


def cmd_run(jobs: Jobs, args: argparse.Namespace) -> int:
    if not args.argv and len(args.words) > 1:
        raise UsageError("give the command as one shell string, or put -- before COMMAND [ARGS...]")
    spec: dict[str, Any] = {
        "command": list(args.words) if args.argv else args.words[0],
        "cwd": os.path.abspath(args.cwd) if args.cwd else os.getcwd(),
        "env_files": [os.path.abspath(f) for f in args.env_file],
        "tags": args.tag,
    }
    if (env := _env_pairs(args.env)) is not None:
        spec["env"] = env
    if args.timeout is not None:
        spec["timeout"] = args.timeout
    if args.kill_after is not None:
        spec["kill_after"] = args.kill_after
    if args.stdin_file is not None:
        spec["stdin_file"] = os.path.abspath(args.stdin_file)
    spec.update(_backend(args))
    if args.json:
        wait_s = 0.0 if args.wait is None else _forever(args.wait)
        payload = jobs.run(**spec, wait_seconds=wait_s, tail_lines=0, max_bytes=MAX_BYTES_CAP)
        _print_json(payload)
        if args.wait is None:
            return EXIT_OK
        if payload.finished_at is None:
            return EXIT_TIMED_OUT
        return job_exit_code(payload.exit_code, payload.signal)
    launched = jobs.run(**spec, wait_seconds=0, tail_lines=0, max_bytes=0)
    if args.wait is None:
        print(launched.job_id)
        return EXIT_OK
    print(f"agent-jobs: job {launched.job_id}", file=sys.stderr, flush=True)
    return _follow_to_end(jobs, launched.job_id, Stream.BOTH, lines=0, timeout=args.wait)


def _follow_to_end(jobs: Jobs, job_id: str, stream: Stream, lines: int, timeout: float | None) -> int:
    ended = follow(jobs, job_id, lines=lines, timeout=_forever(timeout), on_chunk=render.chunk_writer(stream))
    if ended.timed_out:
        return EXIT_TIMED_OUT
    return job_exit_code(ended.exit_code, ended.signal)


def cmd_ls(jobs: Jobs, args: argparse.Namespace) -> int:
    query: dict[str, Any] = {"all": args.all, "tags": args.tag, "limit": args.limit}
    if args.state is not None:
        query["state"] = args.state
    payload = jobs.list(**query)
    if args.json:
        _print_json(payload)
    else:
        render.job_table(payload.root, payload.jobs, payload.truncated)
    return EXIT_OK


def cmd_show(jobs: Jobs, args: argparse.Namespace) -> int:
    payload = jobs.snapshot(job_id=args.id)
    if args.json:
        _print_json(payload)
    else:
        render.record(payload)
    return EXIT_OK


def _stream(args: argparse.Namespace) -> Stream:
    return Stream.BOTH if args.both else Stream.STDERR if args.stderr else Stream.STDOUT


def cmd_logs(jobs: Jobs, args: argparse.Namespace) -> int:
    if args.lines < 0:
        raise UsageError(f"-n {args.lines}: give a number of lines >= 0")
    stream = _stream(args)
    if args.follow:
        on_chunk = _print_json if args.json else render.chunk_writer(stream)
        follow(jobs, args.id, lines=args.lines, timeout=MAX_SECONDS, on_chunk=on_chunk)
        return EXIT_OK
    payload = jobs.snapshot(job_id=args.id, tail_lines=args.lines, max_bytes=MAX_BYTES_CAP)
    if args.json:
        _print_json(payload)
    else:
        render.chunk_writer(stream)(payload)
    return EXIT_OK


def cmd_wait(jobs: Jobs, args: argparse.Namespace) -> int:
    payload = jobs.wait(job_id=args.id, wait_seconds=_forever(args.timeout))
    if args.json:
        _print_json(payload)
    else:
        render.wait_line(payload)
    if payload.timed_out:
        return EXIT_TIMED_OUT
    return job_exit_code(payload.exit_code, payload.signal)


def _each(ids: list[str], call: Callable[[str], Payload], show: Callable[[Any], None], as_json: bool) -> int:
    """Run ``call`` for every id; one failing does not stop the others, and makes the exit code 1."""
    code = EXIT_OK
    for job_id in ids:
        try:
            payload = call(job_id)
        except JobError as exc:
            report(exc, as_json)
            code = EXIT_USAGE if exc.code == "invalid_input" and code == EXIT_OK else EXIT_ERROR
            continue
        if as_json:
            _print_json(payload)
        else:
            show(payload)
    return code


def cmd_kill(jobs: Jobs, args: argparse.Namespace) -> int:
    return _each(args.ids, lambda i: jobs.kill(job_id=i, signal=args.signal), render.kill_line, args.json)


def cmd_restart(jobs: Jobs, args: argparse.Namespace) -> int:
    payload = jobs.restart(job_id=args.id, wait_seconds=0, tail_lines=0, max_bytes=0)
    if args.json:
        _print_json(payload)
    else:
        print(payload.job_id)
    return EXIT_OK


def cmd_rm(jobs: Jobs, args: argparse.Namespace) -> int:
    if bool(args.ids) == (args.older_than is not None):
        raise UsageError("give job ids or --older-than AGE, not both and not neither")
    if args.older_than is not None:
        calls = [{"finished_older_than": args.older_than}]
    else:
        calls = [{"job_id": job_id} for job_id in args.ids]
    code = EXIT_OK
    for call in calls:
        try:
            payload = jobs.delete(**call, dry_run=args.dry_run)
        except JobError as exc:
            report(exc, args.json)
            code = EXIT_ERROR
            continue
        if args.json:
            _print_json(payload)
        else:
            render.delete_lines(payload)
        if payload.skipped and args.ids:
            code = EXIT_ERROR
    return code


def cmd_tag(jobs: Jobs, args: argparse.Namespace) -> int:
    payload = jobs.tag(job_id=args.id, tags=args.tags)
    if args.json:
        _print_json(payload)
    else:
        print(f"{payload.job_id} {' '.join(payload.tags)}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[Jobs, argparse.Namespace], int]] = {
    "run": cmd_run,
    "ls": cmd_ls,
    "list": cmd_ls,
    "show": cmd_show,
    "logs": cmd_logs,
    "wait": cmd_wait,
    "kill": cmd_kill,
    "restart": cmd_restart,
    "rm": cmd_rm,
    "tag": cmd_tag,
}


def dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the parsed command on the store; turn every refusal into its exit code and one line."""
    # As the server does: nothing this process starts (supervisors, jobs) may inherit its secrets.
    for name in SERVER_SECRETS:
        os.environ.pop(name, None)

    def command() -> int:
        jobs = Jobs(args.root)
        jobs.prepare()
        return COMMANDS[args.command](jobs, args)

    return guarded(command, args, parser)
