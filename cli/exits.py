"""The exit codes people expect, and how a refusal becomes one line on stderr and its code.

Light on purpose (no models): the fast ``ls`` path uses it as well as every other command.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable

from jobcore.errors import JobError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
#: What ``timeout(1)`` exits with when the time is up; ``wait`` and ``run --wait`` use it too.
EXIT_TIMED_OUT = 124


class UsageError(Exception):
    """A command line that cannot be run as given; the message names the flag."""


def report(exc: JobError, as_json: bool) -> None:
    """One line on stderr naming the problem; with ``--json`` the tool's error envelope on stdout too."""
    message = exc.message
    if exc.code == "ambiguous_job_id" and exc.details:
        message += f" (candidates: {', '.join(exc.details.get('candidates', []))})"
    print(f"agent-jobs: error: {message}", file=sys.stderr, flush=True)
    if as_json:
        from jobcore import ErrorInfo, ErrorPayload

        info = ErrorInfo(code=exc.code, message=exc.message, retryable=exc.retryable, details=exc.details)
        print(json.dumps(ErrorPayload(error=info).to_dict(), ensure_ascii=False), flush=True)


def guarded(command: Callable[[], int], args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``command``; turn every refusal into its exit code and one line."""
    try:
        return command()
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"agent-jobs {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JobError as exc:
        report(exc, args.json)
        return EXIT_USAGE if exc.code == "invalid_input" else EXIT_ERROR
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # `agent-jobs logs ID | head`: the reader has gone, which is no error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
