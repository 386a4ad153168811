"""The supervisor starts on the standard library alone, and on little of it.

A supervisor is started for every job and stays resident for the job's life, so what its
start-up imports is paid again and again: these tests start one exactly as a launch does
(the argv comes from :func:`jobcore.launch.supervisor_argv`) and look at what got loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import jobcore
from jobcore.launch import supervisor_argv

JOBCORE_DIR = Path(jobcore.__file__).resolve().parent
SUBPACKAGE = JOBCORE_DIR / "supervisor"
#: Modules the start-up budget rules out: slow to import, or not standard library at all.
FORBIDDEN = {"json", "re", "enum", "collections", "tempfile", "typing", "pydantic", "jobcore", "subprocess", "logging"}


def _loaded(argv: list[str], cwd: Path) -> set[str]:
    """Top-level names of the modules ``argv`` (which prints ``sorted(sys.modules)``) had loaded."""
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30, check=True).stdout
    return {name.split(".")[0] for name in ast.literal_eval(out.strip().splitlines()[-1])}


def _outside_stdlib(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("supervisor", "__main__")}


def test_the_launch_argv_imports_the_supervisor_by_path_without_site() -> None:
    argv = supervisor_argv("/nonexistent")
    assert argv[0] == sys.executable
    assert {"-S", "-E"} <= set(argv[1 : argv.index("-c")])
    assert argv[-1] == "/nonexistent"


def test_supervisor_start_up_loads_only_the_standard_library_within_budget(tmp_path: Path) -> None:
    loaded = _loaded(supervisor_argv(str(tmp_path), then="print(sorted(sys.modules))"), tmp_path)
    assert "supervisor" in loaded  # the import line really ran
    assert _outside_stdlib(loaded) == set()
    assert loaded & FORBIDDEN == set()


def test_every_supervisor_module_imports_only_the_standard_library(tmp_path: Path) -> None:
    modules = sorted(p.stem for p in SUBPACKAGE.glob("*.py") if p.stem != "__init__")
    assert {"main", "events", "follow", "fsio", "matcher", "procs", "records"} <= set(modules)
    code = (
        f"import sys; sys.path.insert(0, {str(JOBCORE_DIR)!r}); "
        + "".join(f"import supervisor.{m}; " for m in modules)
        + "print(sorted(sys.modules))"
    )
    loaded = _loaded([sys.executable, "-S", "-E", "-c", code], tmp_path)
    assert _outside_stdlib(loaded) == set()
    assert "jobcore" not in loaded
