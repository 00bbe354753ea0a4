"""Simulated vLLM servers on one event loop: one server, and a fleet of them.

    async with SimulatedFleet(10, problems=load_problems(), tokens_per_second=4000) as fleet:
        fleet.urls                      # ["http://127.0.0.1:40123", ...]
        await fleet.stop_server(3)      # crash one (clients see their streams cut)
        await fleet.start_server(3)     # and bring it back on the same port

    SimulatedFleet(3, faults="reset=0.05,kill=server1@10s+5s", faults_seed=7)   # see `faults.spec`
    fleet.fault_counts()                # {"reset": 4, "kill": 1, ...} injected so far

All servers share one synthetic model and its emission plans (both are pure functions of the
seed); each has its own batch engine, metrics registry and aiohttp application.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence

from aiohttp import web

from engine.records import Problem
from vllm_sim.api.app import SimulatedAPI
from vllm_sim.faults.controller import FaultController
from vllm_sim.faults.injection import ServerFaults
from vllm_sim.faults.spec import KINDS, FaultSpec, parse_faults
from vllm_sim.gpu.plans import PlanCache
from vllm_sim.model.synthetic import SyntheticModel
from vllm_sim.settings import SimulatorConfig

log = logging.getLogger(__name__)

_SHUTDOWN_TIMEOUT_S = 1.0


class SimulatedServer:
    """One simulated vLLM server; `start` after `stop` restarts it, fresh, on the same port."""

    def __init__(
        self,
        config: SimulatorConfig,
        model: SyntheticModel,
        plans: PlanCache,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: ServerFaults | None = None,
    ):
        self.config = config
        self.faults = faults
        self.host = host
        self.port = port  # 0 until started on an ephemeral port
        self._model = model
        self._plans = plans
        self.api: SimulatedAPI | None = None
        self._runner: web.AppRunner | None = None
        self._engine_task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        if self._runner is not None:
            return
        api = SimulatedAPI(self.config, self._model, self._plans, self.faults)
        runner = web.AppRunner(api.app(), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self.api, self._runner = api, runner
        self._engine_task = asyncio.create_task(api.engine.run(), name=f"simulated-engine-{self.port}")
        log.debug("simulated vLLM server listening on %s", self.url)

    async def stop(self) -> None:
        """Stop at once, cutting open streams, as a crashed or killed server would."""
        if self._runner is None or self.api is None:
            return
        runner, api, task = self._runner, self.api, self._engine_task
        self._runner = self.api = self._engine_task = None
        api.engine.abort_connections()
        api.engine.close()
        await runner.cleanup()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log.debug("simulated vLLM server on %s stopped", self.url)


class SimulatedFleet:
    """K simulated servers in this event loop. Use as `async with`, or `start()`/`stop()`."""

    def __init__(
        self,
        servers: int,
        *,
        problems: Sequence[Problem] = (),
        tokens_per_second: float | None = None,
        seed: int | None = None,
        host: str = "127.0.0.1",
        base_port: int = 0,
        config: SimulatorConfig | None = None,
        faults: str | FaultSpec | None = None,
        faults_seed: int = 0,
        **settings,
    ):
        """`settings` override fields of `config` (SimulatorConfig's defaults if None). `faults` is
        a --faults spec (a string, parsed here: FaultSpecError if bad) or a FaultSpec; the same
        `faults_seed` injects the same faults into the same requests."""
        if servers < 1:
            raise ValueError("a fleet needs at least one server")
        spec = parse_faults(faults) if faults is None or isinstance(faults, str) else faults
        self.faults = FaultController.for_fleet(spec, faults_seed, servers) if spec else None
        if tokens_per_second is not None:
            settings["tokens_per_second"] = tokens_per_second
        if seed is not None:
            settings["seed"] = seed
        self.config = dataclasses.replace(config or SimulatorConfig(), **settings)
        self.model = SyntheticModel(problems, self.config.seed)
        self.plans = PlanCache(self.model)
        self.servers = [
            SimulatedServer(
                self.config,
                self.model,
                self.plans,
                host,
                base_port + i if base_port else 0,
                self.faults.per_server[i] if self.faults else None,
            )
            for i in range(servers)
        ]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    async def start(self) -> None:
        try:
            for server in self.servers:
                await server.start()
        except BaseException:
            await self.stop()
            raise
        if self.faults is not None:
            self.faults.start(self.servers)  # scheduled faults count from now

    async def stop(self) -> None:
        if self.faults is not None:
            await self.faults.stop()
        for server in self.servers:
            await server.stop()

    def fault_counts(self) -> dict[str, int]:
        """Faults injected so far, by kind, over all servers (all zero without faults)."""
        return self.faults.counts() if self.faults is not None else dict.fromkeys(KINDS, 0)

    async def stop_server(self, i: int) -> None:
        await self.servers[i].stop()

    async def start_server(self, i: int) -> None:
        await self.servers[i].start()

    async def __aenter__(self) -> SimulatedFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()
