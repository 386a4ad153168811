"""The ``agent-jobs`` console script: the parser of every command and the exit codes people expect.

Exit codes: 0 done; the job's own code for ``run --wait`` and ``wait`` (128 + the signal number for a
job ended by a signal); 124 when ``wait`` reaches its timeout; 2 for a usage error; 1 for any other
error, said in one line on stderr. Only ``serve`` imports the MCP server.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .exits import EXIT_USAGE

#: Commands the server runs (they load the MCP SDK); every other command works on the store alone.
SERVER_COMMANDS = ("serve", "web")
#: ``ls`` and its alias: without ``--json`` they read the index directly (:mod:`.ls`).
LIST_COMMANDS = ("ls", "list")
ENV_ROOT = "AGENT_JOBS_ROOT"


def _version() -> str:
    # importlib.metadata costs a cold start ~30 ms: loaded only for --version.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agent-jobs")
    except PackageNotFoundError:
        return "(not installed)"


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


class _VersionAction(argparse.Action):
    """``--version``: the package metadata is read only when asked for (it costs a cold ``ls`` time)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"agent-jobs {_version()}")
        parser.exit()


def _is_seconds(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bare_wait(argv: list[str]) -> list[str]:
    """``run --wait 'make test'``: a ``--wait`` followed by no number waits for ever.

    argparse would take the shell string as the optional SECONDS; spelling it ``--wait=inf``
    leaves the string to be the command. Nothing after ``--`` is touched.
    """
    end = argv.index("--") if "--" in argv else len(argv)
    return [
        "--wait=inf" if arg == "--wait" and (i + 1 >= end or not _is_seconds(argv[i + 1])) else arg
        for i, arg in enumerate(argv[:end])
    ] + argv[end:]


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", help=f"job store folder (default ${ENV_ROOT}, else the XDG data folder)")
    common.add_argument("--json", action="store_true", help="print the matching tool's payload as JSON")
    return common


def _add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> dict[str, argparse.ArgumentParser]:
    common = _common()

    def add(name: str, help_: str, aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, parents=[common], aliases=list(aliases))

    run = add("run", "start a job: `run 'shell string'` or `run [options] -- COMMAND [ARGS...]`; prints its id")
    run.add_argument("--cwd", help="working directory (default: this one)")
    run.add_argument("--env", action="append", default=[], metavar="K=V", help="set a variable; repeatable")
    run.add_argument("--env-file", action="append", default=[], metavar="FILE", help="KEY=VALUE file; repeatable")
    run.add_argument("--tag", action="append", default=[], help="label the job; repeatable")
    run.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="SIGTERM after this long (0 = none)")
    run.add_argument("--kill-after", type=_seconds, metavar="SECONDS", help="SIGKILL this long after SIGTERM")
    run.add_argument("--stdin-file", metavar="FILE", help="give this file to the command on stdin")
    run.add_argument(
        "--wait",
        nargs="?",
        type=_seconds,
        const=float("inf"),
        metavar="SECONDS",
        help="stream the output and exit with the job's code (124 if still running after SECONDS)",
    )
    slurm = run.add_argument_group("Slurm", "run it on a Slurm cluster (see docs/slurm.md); each option implies it")
    slurm.add_argument("--backend", choices=("local", "slurm"), help="where it runs (default local)")
    for flag, metavar, help_ in (
        ("--partition", "NAME", "the Slurm partition"),
        ("--time-limit", "TIME", "Slurm's time limit (default: the timeout and a margin)"),
        ("--cpus", "N", "CPUs for the job"),
        ("--mem", "SIZE", "memory, e.g. 4G"),
        ("--gres", "GRES", "generic resources, e.g. gpu:1"),
        ("--account", "NAME", "the Slurm account"),
    ):
        slurm.add_argument(flag, metavar=metavar, type=int if flag == "--cpus" else str, help=help_)
    slurm.add_argument(
        "--sbatch-arg", action="append", default=[], metavar="--NAME=VALUE", help="another sbatch option; repeatable"
    )
    run.add_argument(
        "words", nargs="+", metavar="COMMAND", help="a shell string, or after -- an argv run without a shell"
    )

    ls = add("ls", "the jobs of this folder and below, newest first", aliases=["list"])
    ls.add_argument("--all", action="store_true", help="every job, whatever its folder")
    ls.add_argument("--state", choices=("created", "queued", "running", "exited", "killed", "failed"))
    ls.add_argument("--tag", action="append", default=[], help="only jobs with this tag (a.* for a and a.x); AND")
    ls.add_argument("--limit", type=int, default=50, help="most jobs shown (0 = no limit; default 50)")

    show = add("show", "a job's whole record and the tails of its output")
    show.add_argument("id", metavar="ID")

    logs = add("logs", "print a job's output; -f follows it until the job ends")
    logs.add_argument("id", metavar="ID")
    logs.add_argument("-f", "--follow", action="store_true", help="print new output as it comes, until the end")
    which = logs.add_mutually_exclusive_group()
    which.add_argument("--stderr", action="store_true", help="the job's stderr instead of its stdout")
    which.add_argument("--both", action="store_true", help="stdout here and the job's stderr on stderr")
    logs.add_argument("-n", "--lines", type=int, default=0, metavar="LINES", help="last LINES only (0 = all)")

    wait = add("wait", "wait for a job to end; exit with its code (124 at the timeout)")
    wait.add_argument("id", metavar="ID")
    wait.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="give up after this long (default never)")

    kill = add("kill", "signal jobs (SIGTERM, then SIGKILL after their kill-after)")
    kill.add_argument("ids", nargs="+", metavar="ID")
    kill.add_argument("--signal", "-s", default="SIGTERM", help="SIGTERM (default), SIGINT, SIGKILL, SIGHUP, ...")

    restart = add("restart", "run an ended job again, same id; prints its id")
    restart.add_argument("id", metavar="ID")

    rm = add("rm", "delete ended jobs: by id, or every one finished longer ago than AGE")
    rm.add_argument("ids", nargs="*", metavar="ID")
    rm.add_argument("--older-than", metavar="AGE", help="age such as 7d, 12h, 45m, 90s")
    rm.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")

    tag = add("tag", "replace a job's tags")
    tag.add_argument("id", metavar="ID")
    tag.add_argument("tags", nargs="+", metavar="TAG")
    return {name: p for name, p in sub.choices.items() if name not in SERVER_COMMANDS}


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    p = argparse.ArgumentParser(
        prog="agent-jobs",
        description="Durable background jobs for LLM agents: an MCP server, and commands to watch and stop jobs.",
    )
    p.add_argument("--version", action=_VersionAction, help="show the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    # Listed here for --help; `serve` and `web` are parsed by the server's own parser (server.config).
    sub.add_parser("serve", help="serve the job tools over MCP (stdio by default); see `agent-jobs serve -h`")
    sub.add_parser("web", help="serve only the web page of jobs; see `agent-jobs web -h`")
    return p, _add_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "run" in argv:
        argv = _bare_wait(argv)
    if argv[:1] and argv[0] in SERVER_COMMANDS:
        # The server's settings and the SDK are loaded only to serve.
        from server.cli import main as serve

        return serve(argv)
    p, commands = _parser()
    args, extra = p.parse_known_args(argv)
    if args.command is None:
        p.print_usage(sys.stderr)
        print("agent-jobs: error: give a command, e.g. `agent-jobs serve` or `agent-jobs ls`", file=sys.stderr)
        return EXIT_USAGE
    if extra:
        commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")  # exits 2
    if args.command == "run":
        # An argv after `--` runs without a shell; one lone word is a shell string.
        args.argv = "--" in argv[argv.index("run") :] if "run" in argv else False
    if args.command in LIST_COMMANDS and not args.json:
        from .ls import list_table

        if (code := list_table(args, commands[args.command])) is not None:
            return code
    from . import commands as run_command

    return run_command.dispatch(args, commands[args.command])
