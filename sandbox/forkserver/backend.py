"""The fork-server backend, engine side: a set of long-lived jails, each running
sandbox/forkserver/server.py, each verifying one program at a time.

    backend = ForkServerBackend(NsjailLauncher())     # or any launcher of sandbox/launchers/
    await backend.start(limits, workers=2)
    outcome = await backend.run(program, limits)      # or submit(..., done=callback): no task per program

A worker (worker.py) is one jail process (nsjail, firejail, or a bare interpreter for --sandbox
none: the launcher says which) whose stdin/stdout carry the protocol of server.py. Each takes
`depth` programs at once (pipelined: it runs one while the next waits in its stdin), so
`depth` x `workers` programs may be in flight; dispatch.py says which jail gets the next one. A
worker is recycled (its jail killed, a fresh one started in the background) after
`recycle_after` programs (once the last one it holds is answered) or on any anomaly it reports.

Each jail has cgroups of its own (sandbox/cgroups.py: a fair, bounded CPU share, a memory cap,
its CPU time counting every process in it). One more jail than `workers` is reserved: it runs
only the confirmations of load-sensitive verdicts (`run(..., reserved=True)`), with a CPU weight
that gets it a core on a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from sandbox.cgroups import JAIL_SHARES, LAST_SHARES, PoolCgroups, sweep_leftovers
from sandbox.errors import SandboxError
from sandbox.forkserver.blobs import DEFAULT_BUDGET_BYTES
from sandbox.forkserver.dispatch import Ticket, choose
from sandbox.forkserver.pacing import Pacer
from sandbox.forkserver.worker import PIPELINE_DEPTH, BrokenWorker, Worker
from sandbox.launchers.base import Launcher
from sandbox.limits import Limits
from sandbox.verdicts import KillReason, Outcome, Verdict

log = logging.getLogger(__name__)

SELF_TEST_PROGRAM = "def check(candidate):\n    assert candidate(2) == 4\n\ncheck(lambda x: x * 2)\n"
RESTART_ATTEMPTS = 3
RESERVED_WORKERS = 1  # jails that only confirm load-sensitive verdicts


class ForkServerBackend:
    """A sandbox Backend (see sandbox/pool.py) made of `workers` fork-server jails, and one more
    reserved for confirmations."""

    def __init__(
        self,
        launcher: Launcher,
        *,
        startup_timeout_s: float = 30.0,
        recycle_after: int = 1000,
        cgroups: bool = True,
        depth: int = PIPELINE_DEPTH,
        data_budget: int = DEFAULT_BUDGET_BYTES,
    ):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        self.launcher = launcher
        self.depth = depth  # programs in flight per worker (the reserved one: always 1)
        self.takes_data = True  # run(..., data=): problem data, sent to each jail once
        self.takes_last = True  # run(..., last=True): after every other program (submit)
        self.data_budget = data_budget  # bytes of problem data each jail holds at most (blobs.py)
        self.name = launcher.name
        self.startup_timeout_s = startup_timeout_s
        self.recycle_after = recycle_after
        self.features: dict = {}
        self.restarts = 0
        self._want_cgroups = cgroups
        self._cgroups: PoolCgroups | None = None
        self._sh = shutil.which("sh", path="/usr/bin:/bin") or "/bin/sh"
        self._limits = Limits()
        self._queued: dict[bool, deque[Ticket]] = {False: deque(), True: deque()}  # for a jail, by reserved
        self._last: deque[Ticket] = deque()  # run after everything else (`submit(..., last=True)`)
        self._running_last: set[Worker | BrokenWorker] = set()  # jails running one of those
        self._workers: set[Worker] = set()
        self._stand_ins: dict[bool, list[BrokenWorker]] = {False: [], True: []}
        self._restarting = {False: 0, True: 0}  # jails being replaced, by reserved
        self._joins = {False: 0, True: 0}  # jails joining after start() returned, by reserved
        self._broken = {False: 0, True: 0}  # stand-ins for jails that could not be restarted
        self._background: set[asyncio.Task] = set()  # restarts
        self._joining: set[asyncio.Task] = set()  # jails started after start() returned
        self._closed = False
        self._prepared = False
        self._config: dict = {}
        self._pacer = Pacer(self._saturated)  # replies in batches while every jail is busy
        self._cores = max(1, len(os.sched_getaffinity(0)))

    @property
    def memory_cap(self) -> bool:
        """Each jail's memory is capped as a whole (a cgroup), not only per process."""
        return self._cgroups is not None and "memory" in self._cgroups.parents

    async def start(self, limits: Limits, workers: int = 1) -> None:
        """Start the jails and prove they run Python; SandboxError (one line) if they cannot."""
        self._limits = limits
        try:
            try:
                self._prepared = True  # close() undoes whatever part of prepare() ran
                await asyncio.to_thread(sweep_leftovers)
                if self._want_cgroups:
                    self._cgroups = PoolCgroups.create(workers)  # the reserved jail weighs on its own
                self.launcher.prepare(limits)
                self._config = self.launcher.server_config()
            except (OSError, ValueError) as exc:
                raise SandboxError(f"sandbox {self.name} unavailable: {exc}") from exc
            # One jail of each kind now, proved below; the other shared jails join in the
            # background as they come up (on 2 cores, starting them all first doubled the
            # start-up at --workers 4), taking programs as soon as each is ready.
            kinds = [False] + [True] * RESERVED_WORKERS
            started = await asyncio.gather(
                *(self._new_worker(reserved) for reserved in kinds), return_exceptions=True
            )
            failures = [w for w in started if isinstance(w, BaseException)]
            if failures:
                raise failures[0]
            self.features = dict(next(iter(self._workers)).features)
            self.features["cgroups"] = ",".join(self._cgroups.parents) if self._cgroups else "none"
            # Both kinds of jail proved at once; judged in order (a shared jail's failure first).
            proofs = await asyncio.gather(
                *(
                    self.run(SELF_TEST_PROGRAM, limits, label="self-test", reserved=reserved)
                    for reserved in (False, True)
                ),
                return_exceptions=True,
            )
            for outcome in proofs:
                if isinstance(outcome, BaseException):
                    raise outcome
                if outcome.verdict is not Verdict.passed:
                    said = outcome.output.strip().splitlines()[-1:]
                    raise SandboxError(
                        f"sandbox {self.name} self-test failed: {outcome.verdict.value}: {outcome.detail}"
                        + (f": {said[0][:200]}" if said else "")
                    )
        except BaseException:
            await self.close()
            raise
        for _ in range(workers - 1):
            self._joins[False] += 1  # until its task ends, however it ends (cancelled before it ran too)
            self._in_background(self._join(False), self._joining).add_done_callback(self._joined)
        log.info(
            "sandbox ready: %s, %d fork-server workers + %d reserved (%s)",
            self.name,
            workers,
            RESERVED_WORKERS,
            ", ".join(
                f"{k} {v if isinstance(v, str) else 'on' if v else 'off'}"
                for k, v in self.features.items()
                if k != "python"
            ),
        )

    async def _new_worker(self, reserved: bool) -> Worker:
        label = f"engine-sandbox-{self.name}-{secrets.token_hex(4)}"
        argv = self.launcher.command(self._config, label)
        cgroup = None
        if self._cgroups is not None:
            try:
                cgroup = self._cgroups.jail(
                    label, self._limits.jail_memory_mb * 1024 * 1024, reserved=reserved
                )
            except OSError as exc:
                raise SandboxError(f"cannot create the cgroups of a sandbox worker: {exc}") from exc
            argv = cgroup.join_command(self._sh) + argv
        worker = Worker(
            argv,
            label,
            cgroup,
            self.name,
            reserved,
            depth=1 if reserved else self.depth,
            data_budget=self.data_budget,
        )
        self._workers.add(worker)
        try:
            await worker.start(self.startup_timeout_s)
        except BaseException:
            self._workers.discard(worker)
            await worker.kill_and_wait()
            raise
        return worker

    def submit(
        self,
        program: str,
        limits: Limits,
        label: str = "",
        reserved: bool = False,
        data: bytes | None = None,
        *,
        done: Callable[[Outcome], object],
        last: bool = False,
    ) -> Ticket:
        """Queue a program for the next free place (FIFO); `done(outcome)` is called once, never
        from inside this call. `cancel(ticket)` withdraws it (killing its jail if it runs).
        `last`: a program expected to run long (it met a short CPU-time limit, sandbox/verifier.py)
        waits until no other program does, then runs on an idle jail of its own (`_dispatch_last`)."""
        if self._closed:
            raise RuntimeError("ForkServerBackend.submit() after close()")
        ticket = Ticket(program, limits, label, data, done, last=last and not reserved)
        (self._last if ticket.last else self._queued[reserved]).append(ticket)
        self._dispatch(reserved)
        return ticket

    async def run(
        self,
        program: str,
        limits: Limits,
        label: str = "",
        reserved: bool = False,
        data: bytes | None = None,
        *,
        last: bool = False,
    ) -> Outcome:
        """`submit` awaited; cancelling it cancels the ticket."""
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def done(outcome: Outcome) -> None:
            if not answer.done():
                answer.set_result(outcome)

        ticket = self.submit(program, limits, label, reserved, data, done=done, last=last)
        try:
            return await answer
        except BaseException:
            self.cancel(ticket)
            raise

    def cancel(self, ticket: Ticket) -> None:
        """Withdraw a ticket: left out if still queued; its jail killed if its program runs (a
        program is never left running for nobody; the jail's other programs are retried)."""
        ticket.cancelled = True
        if ticket.worker is not None and not ticket.answered:
            ticket.worker.kill(KillReason.closed)

    def _dispatch(self, reserved: bool) -> None:
        """Send queued programs, oldest first, while a jail takes one."""
        queue = self._queued[reserved]
        while queue:
            if queue[0].cancelled:
                queue.popleft()
                continue
            worker = self._choose(reserved)
            if worker is None:
                break
            self._send(worker, reserved, queue.popleft())
        if not reserved:
            if not queue and self._last:
                self._dispatch_last()
            self._pacer.poke()

    def _dispatch_last(self) -> None:
        """Programs submitted `last`, oldest first, once no other program waits: each on an idle
        jail, which then takes nothing else until it is answered, and on at most `jails - cores`
        jails at once (at least one), so that programs arriving meanwhile still find jails."""
        shared = [w for w in self._workers if not w.reserved]
        while self._last and len(self._running_last) < max(1, len(shared) - self._cores):
            if self._last[0].cancelled:
                self._last.popleft()
                continue
            recycle_after = self.recycle_after
            idle = (
                w
                for w in shared
                if w.ready
                and w.healthy
                and w.served < recycle_after
                and not w.in_flight
                and w not in self._running_last
            )
            worker: Worker | BrokenWorker | None = next(idle, None)
            if worker is None and not any(w.healthy for w in shared):  # no jail left to wait for
                worker = next(iter(self._stand_ins[False]), None)
            if worker is None:
                return
            self._running_last.add(worker)
            if isinstance(worker, Worker) and worker.cgroup is not None:
                worker.cgroup.weigh(LAST_SHARES)  # the others' programs first, its own meanwhile
            self._send(worker, False, self._last.popleft())

    def _send(self, worker: Worker | BrokenWorker, reserved: bool, ticket: Ticket) -> None:
        ticket.worker = worker
        answered = functools.partial(self._answered, worker, reserved, ticket)
        worker.submit(ticket.program, ticket.limits, ticket.data, answered)

    def _saturated(self) -> bool:
        """Every shared jail holds the program it runs and the next one, and there are more jails
        than cores: the jails' forks then run where the engine runs, and a jail that runs dry
        during a pause leaves its core to another (pacing.py)."""
        in_flight = [w.in_flight for w in self._workers if not w.reserved]
        return len(in_flight) > self._cores and min(in_flight) >= 2

    def _answered(
        self, worker: Worker | BrokenWorker, reserved: bool, ticket: Ticket, outcome: Outcome, healthy: bool
    ) -> None:
        ticket.answered = True
        if ticket.last:
            self._running_last.discard(worker)
            if isinstance(worker, Worker) and worker.cgroup is not None:
                worker.cgroup.weigh(JAIL_SHARES)
        log.debug("%.3fs %s %s: %s", outcome.wall_s, ticket.label or "-", outcome.verdict, outcome.detail)
        if not worker.in_flight and not reserved:  # it has nothing to run until we send it more
            self._pacer.ran_dry()
        self._after_run(worker, reserved, healthy)
        try:
            if not ticket.cancelled:
                ticket.done(outcome)
        finally:
            self._dispatch(reserved)

    def _choose(self, reserved: bool) -> Worker | BrokenWorker | None:
        """dispatch.choose over the jails taking work: ready, healthy, not worn out."""
        recycle_after = self.recycle_after
        taking: Iterator[Worker | BrokenWorker] = (
            w
            for w in self._workers
            if w.reserved == reserved
            and w.ready
            and w.healthy
            and w.served < recycle_after
            and w not in self._running_last
        )
        return choose(taking, self._stand_ins[reserved], time.monotonic())

    def _after_run(self, worker: Worker | BrokenWorker, reserved: bool, healthy: bool) -> None:
        """Retire the jail after an anomaly at once; when worn out (`recycle_after`) or closing,
        once the last program it holds is answered."""
        if isinstance(worker, Worker) and worker in self._workers:
            if not healthy or not worker.healthy:
                self._retire(worker, reserved)
            elif (worker.served >= self.recycle_after or self._closed) and not worker.busy:
                self._retire(worker, reserved)

    def _retire(self, worker: Worker, reserved: bool) -> None:
        """Kill the worker's jail and start a fresh one in the background."""
        self._workers.discard(worker)  # from now on it counts as restarting, not idle
        self._restarting[reserved] += 1
        self._in_background(self._replace(worker, reserved), self._background)

    def _in_background(self, job: Coroutine[Any, Any, None], tasks: set[asyncio.Task]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(job)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def _replace(self, worker: Worker, reserved: bool) -> None:
        try:
            await self._restart(worker, reserved)
        finally:
            self._restarting[reserved] -= 1

    async def _restart(self, worker: Worker, reserved: bool) -> None:
        await self._discard(worker)
        if self._closed:
            return
        self.restarts += 1
        await self._join(reserved, "restart")

    def _joined(self, task: asyncio.Task) -> None:
        self._joins[False] -= 1

    async def _join(self, reserved: bool, what: str = "start") -> None:
        """Start a jail that takes programs as soon as it is ready; one that cannot be started
        (RESTART_ATTEMPTS times) leaves a stand-in whose programs get infrastructure errors."""
        error: BaseException | None = None
        for attempt in range(RESTART_ATTEMPTS):
            if self._closed:
                return
            try:
                await self._new_worker(reserved)
                self._dispatch(reserved)
                return
            except SandboxError as exc:
                error = exc
                log.warning("sandbox %s: worker %s %d failed: %s", self.name, what, attempt + 1, exc)
                await asyncio.sleep(0.5 * (attempt + 1))
        self._broken[reserved] += 1
        self._stand_ins[reserved].append(BrokenWorker(f"cannot {what} a worker: {error}"))
        self._dispatch(reserved)

    def jail_counts(self) -> dict[str, dict[str, int]]:
        """Jails by role ("verify", or "confirm": the reserved one) and state, read-only: busy
        (running a program), idle (ready), restarting (being replaced, or starting: at start() or
        joining after it), broken (could
        not be restarted: its programs get infra_error until the next run)."""
        counts = {}
        for reserved, role in ((False, "verify"), (True, "confirm")):
            live = [w for w in self._workers if w.reserved == reserved]
            busy = sum(w.busy for w in live)
            ready = sum(w.ready for w in live)
            starting = len(live) - ready  # at start(), or the new jail of a restart (counted there)
            counts[role] = {
                "busy": busy,
                "idle": ready - busy,
                "restarting": max(self._restarting[reserved] + self._joins[reserved], starting),
                "broken": self._broken[reserved],
            }
        return counts

    async def _discard(self, worker: Worker) -> None:
        """End the worker's jail (gently when it is healthy and idle) and remove its cgroups."""
        self._workers.discard(worker)
        if worker.healthy and not worker.busy:
            await worker.shutdown()
        else:
            await worker.kill_and_wait()
        if worker.cgroup is not None:
            await asyncio.to_thread(worker.cgroup.remove)  # may wait a moment for the jail's last exits

    def worker_pids(self) -> list[int]:
        """Host pids of the live workers' top processes (for tests and diagnostics)."""
        return [w.proc.pid for w in self._workers if w.proc is not None and w.proc.returncode is None]

    async def close(self) -> None:
        self._closed = True
        self._pacer.stop()
        for task in list(self._joining):  # jails still starting: not worth waiting for now
            task.cancel()
        await asyncio.gather(*self._joining, return_exceptions=True)
        for queue in (*self._queued.values(), self._last):
            while queue:  # never sent: answered now, as a program whose sandbox went away
                ticket = queue.popleft()
                if not ticket.cancelled:
                    detail = "sandbox closed before the program started"
                    fault = Outcome(Verdict.infra_error, detail, 0.0, self.name, ticket.limits, "")
                    asyncio.get_running_loop().call_soon(ticket.done, fault)
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task
        await asyncio.gather(*(self._discard(w) for w in list(self._workers)))
        if self._prepared:
            if self._cgroups is not None:
                self._cgroups.remove()
                self._cgroups = None
            self.launcher.close()
            self._prepared = False
