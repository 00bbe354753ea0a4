"""A fleet's faults (`FaultController`): each server's `ServerFaults`, and the scheduled events
of the spec (kill, fleet_down, degrade) carried out on the servers' lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from vllm_sim.faults.injection import ServerFaults
from vllm_sim.faults.spec import KINDS, FaultSpec, ScheduledFault

log = logging.getLogger("vllm_sim.faults")  # one logger for every injected fault

_RESTART_RETRY_S = 0.5


class _Server(Protocol):
    """What the controller needs of a SimulatedServer."""

    @property
    def url(self) -> str: ...

    @property
    def running(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class FaultController:
    """A fleet's faults: each server's `ServerFaults`, and the scheduled and killing events.

    A server is down while any outage (a kill, fleet_down) covers it, and degraded while any
    degrade window does; overlapping windows nest, and each server's start/stop run one at a
    time, so that it ends in the state its windows ask for.
    """

    def __init__(self, spec: FaultSpec, seed: int, per_server: Sequence[ServerFaults]):
        self.spec = spec
        self.seed = seed
        self.per_server = list(per_server)
        self._servers: list[_Server] = []
        self._down = [0] * len(self.per_server)
        self._locks = [asyncio.Lock() for _ in self.per_server]
        self._tasks: set[asyncio.Task] = set()
        for i, faults in enumerate(self.per_server):
            faults.on_kill = lambda seconds, i=i: self._spawn(self._outage(i, seconds))

    @classmethod
    def for_fleet(cls, spec: FaultSpec, seed: int, servers: int) -> FaultController:
        spec.check_fleet(servers)
        return cls(spec, seed, [ServerFaults(spec, seed, i) for i in range(servers)])

    def start(self, servers: Sequence[_Server]) -> None:
        """Call once the servers listen: scheduled times count from now."""
        self._servers = list(servers)
        for faults, server in zip(self.per_server, self._servers):
            faults.url = server.url
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for event in self.spec.events:
            self._spawn(self._scheduled(event, t0))

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def counts(self) -> dict[str, int]:
        """Faults injected so far, by kind, over the fleet."""
        total = dict.fromkeys(KINDS, 0)
        for faults in self.per_server:
            for kind, count in faults.counts.items():
                total[kind] += count
        return total

    # -- events ----------------------------------------------------------------------------------

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _scheduled(self, event: ScheduledFault, t0: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, t0 + event.at - loop.time()))
        targets = event.targets(len(self.per_server))
        until = "for good" if event.duration is None else f"for {event.duration:g} s"
        if event.kind == "degrade":
            for i in targets:
                self.per_server[i].record(
                    "degrade", f"/health fails{' and requests fail' if event.errors else ''} {until}"
                )
                self._degrade(i, +1, event.errors)
            if event.duration is None:
                return
            try:
                await asyncio.sleep(event.duration)
            finally:
                for i in targets:
                    self._degrade(i, -1, event.errors)
                    log.info("fault degrade on server%d (%s) is over", i, self.per_server[i].url)
            return
        what = "the whole fleet stops" if event.kind == "fleet_down" else "killed: stops listening"
        for i in targets:
            self.per_server[i].record(event.kind, f"{what}, connections dropped, {until}")
        await asyncio.gather(*(self._outage(i, event.duration) for i in targets))

    def _degrade(self, i: int, step: int, errors: bool) -> None:
        faults = self.per_server[i]
        faults.degraded += step
        if errors:
            faults.failing += step

    async def _outage(self, i: int, seconds: float | None) -> None:
        """Server i down now; back after `seconds` (None: for good) unless another outage holds it."""
        self._down[i] += 1
        try:
            await self._reconcile(i)
            if seconds is None:
                return  # down for good
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:  # the fleet is stopping: no restart
            self._down[i] -= 1
            raise
        self._down[i] -= 1
        if self._down[i] == 0:
            log.info("server%d (%s) is back after its outage", i, self.per_server[i].url)
            await self._reconcile(i)

    async def _reconcile(self, i: int) -> None:
        """Bring server i to the state its outages ask for."""
        async with self._locks[i]:
            server = self._servers[i]
            if self._down[i] and server.running:
                await server.stop()
            while not self._down[i] and not server.running:
                try:
                    await server.start()
                except OSError as exc:  # someone took the port meanwhile: try again
                    log.warning("server%d cannot listen again on %s: %s; retrying", i, server.url, exc)
                    await asyncio.sleep(_RESTART_RETRY_S)
