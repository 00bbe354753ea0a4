"""A pool of sandbox workers for asyncio (uvloop or not): at most `workers` programs at once."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from typing import Protocol

from sandbox.limits import Limits
from sandbox.verdicts import Outcome


class Backend(Protocol):
    """A way to run programs and judge them (sandbox/forkserver/backend.py: fork-server jails)."""

    name: str
    # Optional: `takes_data = True` when run() takes `data` (problem data sent to each jail once);
    # `takes_last = True` when run() takes `last` (run after every other program waiting).

    async def start(self, limits: Limits, workers: int) -> None: ...
    async def run(
        self, program: str, limits: Limits, label: str = "", reserved: bool = False, data: bytes | None = None
    ) -> Outcome: ...
    async def close(self) -> None: ...


class SandboxPool:
    """
    async with SandboxPool(workers=2, limits=Limits()) as pool:
        outcome = await pool.run(program)

    `run()` waits for a free place before it starts anything, so any number of callers may wait
    on it while only `workers` jails exist, each holding up to the backend's `depth` programs
    (pipelined: the next one waits inside the jail while the current one runs). `capacity` is
    how many calls can be in flight at once: keep that many callers to keep every jail busy.
    `close()` kills whatever still runs.
    """

    def __init__(
        self,
        workers: int | None = None,
        limits: Limits | None = None,
        *,
        backend: Backend | str | None = None,
    ):
        workers = workers if workers is not None else default_workers()
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self.limits = limits or Limits()
        if backend is None or isinstance(backend, str):
            backend = make_backend(backend or "nsjail")
        self.backend = backend
        self.capacity = workers * getattr(backend, "depth", 1)  # programs in flight at once
        self.takes_data = bool(getattr(backend, "takes_data", False))  # run(..., data=) is understood
        self.takes_last = bool(getattr(backend, "takes_last", False))  # submit(..., last=) is understood
        self._slots = asyncio.Semaphore(self.capacity)
        self._reserved = asyncio.Semaphore(1)  # the backend's reserved worker (confirmations)
        self._state = "new"  # new -> started -> closed

    async def start(self) -> None:
        """Check the backend can run programs; raises sandbox.errors.SandboxError if not."""
        if self._state != "new":
            raise RuntimeError(f"SandboxPool.start() on a {self._state} pool")
        await self.backend.start(self.limits, self.workers)
        self._state = "started"

    async def run(
        self,
        program: str,
        *,
        limits: Limits | None = None,
        label: str = "",
        reserved: bool = False,
        data: bytes | None = None,
    ) -> Outcome:
        """Verify one program (a task kind builds it, e.g. with `check_program`). `label` (e.g. a task id) shows
        in logs and in `ps`. `reserved`: on the worker kept apart for confirming load-sensitive
        verdicts. `data`: the problem's data (e.g. its test inputs), the same bytes for every
        sample of a problem: each jail gets it once and the program reads it as
        `__problem_data__` (sandbox/forkserver/server.py, PROTOCOL). Cancelling the call kills
        the program's jail."""
        if self._state != "started":
            raise RuntimeError(f"SandboxPool.run() on a {self._state} pool")
        async with self._reserved if reserved else self._slots:
            if self._state != "started":
                raise RuntimeError("SandboxPool closed while run() waited for a worker")
            if data is None:
                return await self.backend.run(program, limits or self.limits, label, reserved)
            if not self.takes_data:
                raise ValueError(f"the {self.backend.name} sandbox takes no problem data")
            return await self.backend.run(program, limits or self.limits, label, reserved, data)

    def submit(
        self,
        program: str,
        *,
        limits: Limits | None = None,
        label: str = "",
        reserved: bool = False,
        data: bytes | None = None,
        done: Callable[[Outcome | BaseException], object],
        last: bool = False,
    ) -> Callable[[], object]:
        """`run` without a task per program, for callers verifying many: `done(outcome)` is
        called once (or with the exception that stopped it), never from inside this call.
        Returns `stop()`: the program is withdrawn (its jail killed if it runs). A backend
        without `submit` runs it in a task. `last`: a program expected to run long waits until
        no other does, where the backend can tell (`takes_last`; elsewhere it is queued as any)."""
        if self._state != "started":
            raise RuntimeError(f"SandboxPool.submit() on a {self._state} pool")
        if data is not None and not self.takes_data:
            raise ValueError(f"the {self.backend.name} sandbox takes no problem data")
        submit, cancel = getattr(self.backend, "submit", None), getattr(self.backend, "cancel", None)
        if submit is not None and cancel is not None:
            if last and self.takes_last:
                ticket = submit(program, limits or self.limits, label, reserved, data, done=done, last=True)
            else:  # no keyword: backends without `last` take the same call
                ticket = submit(program, limits or self.limits, label, reserved, data, done=done)
            return functools.partial(cancel, ticket)
        task = asyncio.get_running_loop().create_task(
            self.run(program, limits=limits, label=label, reserved=reserved, data=data)
        )
        task.add_done_callback(
            lambda t: done(asyncio.CancelledError() if t.cancelled() else t.exception() or t.result())
        )
        return task.cancel

    def jails(self) -> dict[str, dict[str, int]]:
        """Jails by role and state (ForkServerBackend.jail_counts), for metrics; {} for a backend
        that does not say."""
        counts = getattr(self.backend, "jail_counts", None)
        return counts() if counts is not None else {}

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    async def close(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        await self.backend.close()

    async def __aenter__(self) -> SandboxPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def make_backend(name: str) -> Backend:
    """The fork-server backend of that kind, a name of sandbox/launchers/: "nsjail" (default),
    "firejail", or "none" (no sandbox)."""
    from sandbox.forkserver.backend import ForkServerBackend
    from sandbox.launchers import LAUNCHERS

    if name not in LAUNCHERS:
        raise ValueError(f"unknown sandbox {name!r}; choose one of {', '.join(LAUNCHERS)}")
    return ForkServerBackend(LAUNCHERS[name]())


def default_workers() -> int:
    """Two sandboxes per usable core: while some programs sit out a time limit (sleeping, or spinning
    until their CPU limit) others keep the cores busy and short samples keep flowing. Measured
    on 2 cores: the same throughput as one per core or better, and a sweep's verification lag
    p99 0.9 s instead of 2.3 s (bench/e2e.py)."""
    return 2 * len(os.sched_getaffinity(0))  # the cores we may run on (taskset), not the machine's
