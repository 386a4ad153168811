"""The fork server's warm-up: a few throwaway jobs supervised in the fork server itself.

What CPython fills in on first use (its type cache, the adaptive bytecode of the code a
supervisor runs) is then filled in once, in pages every supervisor forked later shares, instead
of being written into each one's own: ~230 KiB less per supervisor (``docs/performance.md``).
"""

from __future__ import annotations

import _signal
import os

from . import fsio, main

#: Throwaway jobs supervised (see :func:`warm_up`): measured, the gain levels off by ten, when
#: every function a supervisor calls has run often enough to be specialised.
WARM_UP_RUNS = 10
WARM_UP_PREFIX = ".forkserver-warmup-"


def warm_up(root: str) -> None:
    """Supervise :data:`WARM_UP_RUNS` jobs running ``:`` in this process, under ``root``.

    Each supervisor forked afterwards then finds the interpreter's caches filled and its code
    specialised, pages it shares instead of writing its own copy (``docs/performance.md``).
    Best effort: a run that fails is only a colder start. What :func:`main.main` changes in the
    process it runs in, a process that is about to exit, is put back: the subreaper flag, the
    signal handlers (the caller sets its own after), the descriptors left to that exit. It
    waits for its own command only, not for our children."""
    base = f"{root}/{WARM_UP_PREFIX}{os.getpid()}"
    meta = {
        "job": {"id": "warm-up"},
        "command": ":",
        "cwd": "/",
        "inherit_env": True,
        "env_files": [],
        "timeout_ms": 0,
        "kill_after_ms": 5000,
        "tags": [],
    }
    environ = {"PATH": os.environ.get("PATH", os.defpath)}
    fds = set(os.listdir("/proc/self/fd"))
    try:
        os.mkdir(base, 0o700)
        for run in range(WARM_UP_RUNS):
            job_dir = f"{base}/{run}"
            os.mkdir(job_dir, 0o700)
            fsio.write_json_atomic(f"{job_dir}/{fsio.META}", meta)
            os.mkfifo(f"{job_dir}/{fsio.WAKE_FIFO}", 0o600)
            main.main(job_dir, environ, reap_all=False)
            _signal.set_wakeup_fd(-1)  # its pipe is closed next: no signal may write to a reused fd
            for fd in set(os.listdir("/proc/self/fd")) - fds:
                try:
                    os.close(int(fd))
                except OSError:
                    pass  # the directory listing's own
    except Exception:
        pass
    finally:
        main.release_subreaper()
        _signal.signal(_signal.SIGUSR1, _signal.SIG_DFL)
        _remove_tree(base)


def _remove_tree(path: str) -> None:
    """Remove a warm-up's directory (two levels deep): no :mod:`shutil`, whose import alone
    costs every supervisor forked after it pages of its own."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        inner = f"{path}/{name}"
        try:
            for leaf in os.listdir(inner):
                os.unlink(f"{inner}/{leaf}")
            os.rmdir(inner)
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass
