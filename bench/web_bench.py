"""Web page figures: the jobs page of a store of 500 jobs, beside ``list_jobs`` of the same store.

The page is fetched over HTTP from ``agent-jobs web`` running as its own process (the whole page:
the engine's listing, the filters and the HTML); the baseline is the engine's ``list`` verb, in this
process, over the same store: what any view of every job costs before a byte of HTML.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .table import Row

REPO = Path(__file__).resolve().parent.parent
JOBS = 500
RUN = 20  # of them ended (exited), the rest created
ROUNDS = 15
TOKEN = "bench-web-token-0123456789abcdef"


def _store(root: Path) -> None:
    from jobcore import Jobs

    jobs = Jobs(root)
    for i in range(JOBS - RUN):
        jobs.create(command=f"echo job {i}", cwd=str(root.parent), tags=["bench", f"n{i % 7}"])
    for i in range(RUN):
        jobs.run(command=f"echo ran {i}", cwd=str(root.parent), tags=["bench"], wait_seconds=30)


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.1f} ms"


def measure() -> list[Row]:
    import httpx2

    from jobcore import Jobs

    with tempfile.TemporaryDirectory(prefix="agent-jobs-bench-web-") as tmp:
        root = Path(tmp) / "jobs"
        _store(root)
        env = {**os.environ, "AGENT_JOBS_TOKEN": TOKEN, "PYTHONPATH": str(REPO), "XDG_STATE_HOME": tmp}
        argv = [sys.executable, "-m", "server", "web", "--port", "0", "--root", str(root), "--log-level", "warning"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
        try:
            assert proc.stderr is not None
            line = next(line for line in proc.stderr if "web page at" in line)
            base = re.search(r"web page at (http://\S+?)/", line).group(1)  # the link carries no token off a tty
            page, listing = [], []
            jobs = Jobs(root)
            with httpx2.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
                for round_ in range(ROUNDS + 2):  # the first two warm both up
                    started = time.perf_counter()
                    response = http.get(f"{base}/")
                    took = time.perf_counter() - started
                    assert response.status_code == 200 and response.text.count("data-job-id=") == JOBS
                    started = time.perf_counter()
                    assert len(jobs.list(all=True, limit=0).jobs) == JOBS
                    listed = time.perf_counter() - started
                    if round_ >= 2:
                        page.append(took)
                        listing.append(listed)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return [
        Row(
            f"web: jobs page of a {JOBS}-job store, over HTTP (median)",
            _median_ms(page),
            _median_ms(listing),
            "list_jobs of the same store, in process",
            "< 300 ms",
        )
    ]


if __name__ == "__main__":
    from .table import render

    print(render(measure()))
