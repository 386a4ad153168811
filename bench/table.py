"""The row type every bench module returns, and the table it is printed as."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    metric: str
    ours: str
    baseline: str
    baseline_what: str
    aim: str = ""


def render(rows: list[Row]) -> str:
    header = ("metric", "agent-jobs", "baseline", "baseline is", "aim")
    cells = [header] + [(r.metric, r.ours, r.baseline, r.baseline_what, r.aim) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c[i].ljust(widths[i]) for i in range(len(header))) + " |" for c in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
