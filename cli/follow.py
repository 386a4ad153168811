"""``logs -f`` and ``run --wait``: a job's output as it is written, until the job ends.

The end comes from the engine's ``wait`` (the job's wake FIFO, the same event the MCP tool waits
on), run in a thread that writes to a pipe when it returns; new output is found by a short poll of
the log sizes and read with offset snapshots, so the chunks join to the exact text of the logs.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass

from jobcore import Jobs
from jobcore.inputs import MAX_BYTES_CAP
from jobcore.payloads import SnapshotPayload, WaitPayload

#: Seconds between two looks at the log sizes while the job runs (the end never waits on it).
POLL_S = 0.1


@dataclass(frozen=True)
class Ended:
    """How the follow stopped: the job's end, or the timeout before it."""

    timed_out: bool
    exit_code: int | None
    signal: str | None


class _EndWatch:
    """The engine's ``wait`` in a thread; :attr:`fd` becomes readable when it returns or fails."""

    def __init__(self, jobs: Jobs, job_id: str, timeout: float) -> None:
        self._read, self._write = os.pipe2(os.O_CLOEXEC)
        self.payload: WaitPayload | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(jobs, job_id, timeout), daemon=True)
        self._thread.start()

    @property
    def fd(self) -> int:
        return self._read

    def _run(self, jobs: Jobs, job_id: str, timeout: float) -> None:
        try:
            self.payload = jobs.wait(job_id=job_id, wait_seconds=timeout, tail_lines=0, max_bytes=0)
        except BaseException as exc:
            self.error = exc
        finally:
            os.write(self._write, b"x")

    def result(self) -> WaitPayload:
        self._thread.join()
        os.close(self._read)
        os.close(self._write)
        if self.error is not None:
            raise self.error
        assert self.payload is not None
        return self.payload


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def follow(
    jobs: Jobs,
    job_id: str,
    *,
    lines: int,
    timeout: float,
    on_chunk: Callable[[SnapshotPayload], None],
) -> Ended:
    """Pass the last ``lines`` (0 = all) and then every new chunk to ``on_chunk`` until the job ends."""
    first = jobs.snapshot(job_id=job_id, tail_lines=lines, max_bytes=MAX_BYTES_CAP)
    on_chunk(first)
    out, err = first.snapshot.stdout_range[1], first.snapshot.stderr_range[1]
    watch = _EndWatch(jobs, first.job_id, timeout)
    ended = False
    while True:
        if not ended:
            ended = bool(select.select([watch.fd], [], [], POLL_S)[0])
        # After the end, read until the logs stop growing: the last lines are never lost.
        while _size(first.stdout_log_path) > out or _size(first.stderr_log_path) > err:
            chunk = jobs.snapshot(job_id=first.job_id, stdout_offset=out, stderr_offset=err, max_bytes=MAX_BYTES_CAP)
            on_chunk(chunk)
            out, err = chunk.snapshot.stdout_range[1], chunk.snapshot.stderr_range[1]
        if ended:
            break
    done = watch.result()
    return Ended(timed_out=done.timed_out, exit_code=done.exit_code, signal=done.signal)
