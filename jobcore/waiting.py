"""One waiting code path for the sync and the async API.

A verb that waits returns a :data:`Flow`: a generator that yields :class:`WaitFor` whenever it
must wait for an event (a pidfd that becomes readable when a process exits, the wake FIFO that
hangs up when a supervisor finishes). A verb that never waits returns its payload. Both drivers
take the call itself and accept either: :func:`drive_sync` blocks in ``poll``; :func:`drive_async`
runs the call and each step in a worker thread and waits in the event loop, so an async wait never
blocks other work.
"""

from __future__ import annotations

import errno
import select
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread

from .errors import JobError

T = TypeVar("T")

#: poll() takes a 32-bit count of milliseconds; any longer wait is a wait "for ever".
_LONGEST_POLL_S = 24 * 86400
_RETRYABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EBUSY, errno.EMFILE, errno.ENFILE})


def _io_error(exc: OSError) -> JobError:
    """Disk full, permissions and the like, as an ``io_error`` (retryable when it may pass)."""
    where = f": {exc.filename}" if exc.filename else ""
    return JobError(
        "io_error",
        f"{exc.strerror or exc}{where}",
        retryable=exc.errno in _RETRYABLE_ERRNOS,
        details={"errno": errno.errorcode.get(exc.errno or 0, str(exc.errno))},
    )


@dataclass
class WaitFor:
    """Resume when any of ``fds`` is readable, or after ``timeout`` seconds (None: no limit).

    ``shield``: the wait and the step after it run to their end even if the call is cancelled
    meanwhile (a launch waiting for its supervisor's acknowledgement must learn the outcome).
    """

    fds: list[int] = field(default_factory=list)
    timeout: float | None = None
    shield: bool = False


#: The steps of a verb that waits: yields what to wait for, returns the payload.
Flow = Generator[WaitFor, None, T]


def _begin(call: Callable[[], Flow[T] | T]) -> Flow[T] | T:
    """Make the call: it validates and checks the policy, then runs a verb that never waits or hands back a Flow."""
    try:
        return call()
    except OSError as exc:
        raise _io_error(exc) from exc


def drive_sync(call: Callable[[], Flow[T] | T]) -> T:
    outcome = _begin(call)
    if not isinstance(outcome, Generator):
        return outcome
    return _drive_flow(outcome)


def _drive_flow(steps: Flow[T]) -> T:
    try:
        request = next(steps)
        while True:
            poller = select.poll()
            for fd in request.fds:
                poller.register(fd, select.POLLIN)
            timeout = _LONGEST_POLL_S if request.timeout is None else min(max(0, request.timeout), _LONGEST_POLL_S)
            poller.poll(timeout * 1000)
            request = steps.send(None)
    except StopIteration as done:
        return done.value
    except OSError as exc:
        raise _io_error(exc) from exc
    finally:
        steps.close()


async def _wait_async(request: WaitFor) -> None:
    with anyio.move_on_after(request.timeout):
        if not request.fds:
            await anyio.sleep_forever()
        elif len(request.fds) == 1:
            await anyio.wait_readable(request.fds[0])
        else:
            with select.epoll() as ep:
                for fd in request.fds:
                    ep.register(fd, select.EPOLLIN)
                await anyio.wait_readable(ep.fileno())


def _advance(steps: Flow[T]) -> tuple[WaitFor | None, T | None]:
    """One step, in a worker thread; StopIteration may not cross into a future, so it is unpacked here."""
    try:
        return steps.send(None), None
    except StopIteration as done:
        return None, done.value
    except OSError as exc:
        raise _io_error(exc) from exc


#: The engine's blocking steps run on threads of their own: on anyio's default threads, a
#: thousand calls at once would starve whatever else needs one. Few of them: the steps are
#: short (waits happen in the event loop), and every extra thread contending for the GIL
#: delays the event loop, which must answer every other request (a ping within milliseconds)
#: while a thousand launches are under way. See docs/performance.md.
ENGINE_THREADS = 4
_ENGINE_THREADS = anyio.CapacityLimiter(ENGINE_THREADS)


#: Launches between their first step and the supervisor's acknowledgement, at most: the
#: supervisors start together and share the CPU, so more at once only make each acknowledge
#: later (a thousand at once missed the acknowledgement deadline). 32 is as many as the 32
#: engine threads this replaced kept in flight; 8 made 200 launches slower in all.
LAUNCHES_IN_FLIGHT = 32
_LAUNCHES = anyio.CapacityLimiter(LAUNCHES_IN_FLIGHT)


async def drive_async(call: Callable[[], Flow[T] | T], *, launches: bool = False, begin_in_loop: bool = False) -> T:
    """Run the call; with ``launches``, it counts as a launch in flight until it first waits
    unshielded (it watches the launched job) or ends. ``begin_in_loop``: the call itself only
    validates and hands back its Flow (no I/O), so it is made in the loop, saving a thread hop."""
    admission = _LAUNCHES if launches else None
    if admission is not None:
        await admission.acquire()
    try:
        if begin_in_loop:
            outcome = _begin(call)
        else:
            outcome = await anyio.to_thread.run_sync(_begin, call, limiter=_ENGINE_THREADS)
        if not isinstance(outcome, Generator):
            return outcome
        steps: Flow[T] = outcome
        try:
            request: WaitFor | None = None
            while True:
                # A shielded wait and the step after it are one: the call's cancellation waits for both.
                with anyio.CancelScope(shield=request is not None and request.shield):
                    if request is not None and request.shield:
                        await _wait_async(request)
                    request, result = await anyio.to_thread.run_sync(_advance, steps, limiter=_ENGINE_THREADS)
                if request is None:
                    return result  # type: ignore[return-value]
                if not request.shield:
                    if admission is not None:
                        admission.release()
                        admission = None
                    await _wait_async(request)
        finally:
            steps.close()
    finally:
        if admission is not None:
            admission.release()
