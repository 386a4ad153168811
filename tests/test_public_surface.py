"""The server uses jobcore through its public surface only: the package itself, never a submodule."""

from __future__ import annotations

import ast
from pathlib import Path

import jobcore

SERVER = Path(__file__).resolve().parent.parent / "server"


def submodule_imports(path: Path) -> list[str]:
    """``file:line: module`` for each import of a jobcore submodule, or of a name jobcore does not export."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "jobcore":
            modules = [f"jobcore.{alias.name}" for alias in node.names if alias.name not in jobcore.__all__]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module or ""]
        else:
            continue
        found += [f"{path.name}:{node.lineno}: {m}" for m in modules if m.startswith("jobcore.")]
    return found


def test_the_server_imports_nothing_but_jobcore_itself() -> None:
    sources = sorted(SERVER.rglob("*.py"))
    assert sources
    assert [line for path in sources for line in submodule_imports(path)] == []


def test_every_public_name_is_there() -> None:
    assert all(hasattr(jobcore, name) for name in jobcore.__all__)
