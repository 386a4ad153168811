"""When a command first writes to a FIFO, stamped by a process of its own that waits for it.

A launch is timed to the command's first instruction: ``echo x > FIFO``. Reading the FIFO
only once the launch call has returned would time the return instead, since the command's
open of the FIFO blocks until a reader comes. So a helper process sits in ``open`` on the
FIFO from the start and stamps the moment a writer opens it, whatever the caller is busy with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType

#: The helper: stamp (``time.monotonic``) each writer's open, read it to its end, print the stamp.
_HELPER = """
import os, sys, time
print("ready", flush=True)
while True:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    stamp = time.monotonic()
    while os.read(fd, 4096):
        pass
    os.close(fd)
    print(repr(stamp), flush=True)
"""


class FirstWrite:
    """A FIFO at ``path`` and the helper that stamps each write; ``stamp()`` is the next one's time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._helper: subprocess.Popen[str] | None = None

    def __enter__(self) -> FirstWrite:
        os.mkfifo(self.path)
        self._helper = subprocess.Popen(
            [sys.executable, "-c", _HELPER, str(self.path)], stdout=subprocess.PIPE, text=True
        )
        assert self._helper.stdout is not None
        if self._helper.stdout.readline().strip() != "ready":
            raise RuntimeError("the FIFO stamping helper did not start")
        return self

    def stamp(self) -> float:
        """The ``time.monotonic()`` at which the next writer opened the FIFO (blocks until one did)."""
        assert self._helper is not None and self._helper.stdout is not None
        return float(self._helper.stdout.readline())

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._helper is not None:
            self._helper.kill()
            self._helper.wait()
            assert self._helper.stdout is not None
            self._helper.stdout.close()
        self.path.unlink(missing_ok=True)
