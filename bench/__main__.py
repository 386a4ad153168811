"""``python -m bench``: every figure with its baseline, as one table."""

from __future__ import annotations

import importlib
import sys

from .table import Row, render

MODULES = (
    "bench.jobcore_bench",
    "bench.list_bench",
    "bench.server_bench",
    "bench.scale_bench",
    "bench.ksm_bench",
    "bench.until_bench",
    "bench.cli_bench",
    "bench.web_bench",
    "bench.slurm_bench",
)


def main() -> None:
    rows: list[Row] = []
    for name in MODULES:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        rows += importlib.import_module(name).measure()
    print(render(rows))


if __name__ == "__main__":
    main()
