"""Verification spread over a Ray cluster: a sandbox.pool.Backend whose programs run on the
nodes' own sandbox pools (engine/remote/node.py), one actor per node.

    backend = RayBackend("auto", sandbox="nsjail", node_workers=None, metrics=NodeMetrics(registry))
    workers = backend.connect()                        # InputError (one line) if no cluster answers
    async with SandboxPool(workers, limits, backend=backend) as pool:   # starts an actor per node
        outcome = await pool.run(program)

Only program runs cross the cluster: the engine keeps dedup, calibration, admission and the
store (sandbox.verifier.Verifier and engine.sweep.sweep.Sweep over this pool, as over a local one),
and every program carries its limits. An actor is placed on its node by a hard
NodeAffinitySchedulingStrategy and asks no CPU of Ray (num_cpus=0): its jails use the CPUs the
node declares (`ray start --num-cpus`), two sandboxes per CPU unless --workers says how many.
Nodes that declare no CPU (a KubeRay head with num-cpus 0) get no actor.

A node lost while it holds programs (its raylet or its machine died, the actor was killed): its
programs are sent to the other nodes, so each still gets exactly one outcome. Nodes that join
later, or come back, get an actor at the next look (every `rescan_s`). With no node at all for
`node_wait_s`, programs end as infra_error (retried by the next run of the same command).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

import ray
from prometheus_client import CollectorRegistry, Counter, Gauge
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from engine.errors import InputError
from engine.remote.dispatch import Dispatcher, NodeInfo, alive_nodes
from engine.remote.node import NodeSandbox
from sandbox import Limits, Outcome, SandboxError, Verdict

log = logging.getLogger(__name__)
# Ray Client starts a server per connection on the head; on a head that has just started or is
# busy, that server sometimes exits at once ("Initialization failure from server", after Ray's own
# 30 s wait). A later connection works: one failure does not end the run.
JOIN_ATTEMPTS = 3

NODE_LOST = (RayActorError,)  # ActorDiedError, ActorUnavailableError: the node or its actor is gone
CONNECT_TIMEOUT_S = 5.0  # the head's port must answer this soon
START_TIMEOUT_S = 120.0  # an actor's jails started and self-checked (the node may fetch nothing)


class NodeMetrics:
    """Per-node series, beside the engine's own (README, "Metrics")."""

    def __init__(self, registry: CollectorRegistry | None = None):
        registry = registry if registry is not None else CollectorRegistry()
        self.verifications = Counter(
            "engine_node_verifications",
            "Programs a Ray node ran, by its verdict (infra_error included; dedup reuses run nowhere)",
            ["node", "verdict"],
            registry=registry,
        )
        self.up = Gauge(
            "engine_node_up", "1 while the node's sandbox actor takes programs", ["node"], registry=registry
        )
        self.sandboxes = Gauge("engine_node_sandboxes", "Sandboxes on the node", ["node"], registry=registry)


def _check_reachable(address: str) -> None:
    """InputError at once when the head does not answer: Ray itself retries a dead address for
    minutes. "auto" is the address RAY_ADDRESS names, if it names one (else Ray's own lookup)."""
    target = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
    host, colon, port = target.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise InputError(f"--verify-on: no Ray cluster answers at {target}: {exc.strerror or exc}") from None


def _cluster_messages_to_log() -> None:
    """Ray prints the cluster's messages to a driver (a raylet died...) on stdout, where --json
    puts the summary: they go to the log (stderr) instead. Ray offers no option for it, so its
    printer is replaced; if a Ray release renames it, the messages show on stdout again."""
    from ray._private import worker

    if hasattr(worker, "print_to_stdstream"):
        worker.print_to_stdstream = _log_cluster_message


def _log_cluster_message(data: dict, ignore_prefix: bool = False) -> None:
    for line in data.get("lines", ()):
        log.warning(
            "Ray (%s): %s",
            data.get("pid", "cluster"),
            str(line).strip().splitlines()[0] if str(line).strip() else "",
        )


def ray_address(verify_on: str) -> str:
    """ray.init's address for a --verify-on value: "ray" is the running cluster (address=auto)."""
    return "auto" if verify_on == "ray" else verify_on


class RayBackend:
    def __init__(
        self,
        address: str,
        *,
        sandbox: str,
        node_workers: int | None,
        metrics: NodeMetrics,
        node_wait_s: float = 60.0,
        rescan_s: float = 2.0,
    ):
        self.name = f"{sandbox} on Ray"
        self.address = address
        self.sandbox = sandbox
        self.node_workers = node_workers  # None: two per CPU the node declares
        self.metrics = metrics
        self.node_wait_s = node_wait_s
        self.rescan_s = rescan_s
        self._nodes = Dispatcher()
        self._actors: dict[str, Any] = {}  # label -> actor handle, for the nodes in _nodes
        self._starting: set[str] = set()
        self._limits = Limits()
        self._has_node = asyncio.Event()
        self._empty_since: float | None = None
        self._rescanning: asyncio.Task | None = None
        self._closed = False

    def connect(self) -> int:
        """Join the cluster; the sandboxes its nodes will have in all (the pool's workers)."""
        _check_reachable(self.address)
        _cluster_messages_to_log()
        for attempt in range(1, JOIN_ATTEMPTS + 1):
            try:
                ray.init(
                    address=self.address,
                    namespace="engine",
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
                break
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
                # ConnectionAbortedError: Ray Client's server for us did not start; worth a retry
                if not isinstance(exc, ConnectionAbortedError) or attempt == JOIN_ATTEMPTS:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise InputError(
                        f"--verify-on: cannot join the Ray cluster at {self.address}: {reason}"
                    ) from None
                log.warning(
                    "--verify-on: %s could not start a Ray Client server for us (attempt %d of %d); "
                    "trying again",
                    self.address,
                    attempt,
                    JOIN_ATTEMPTS,
                )
        nodes = alive_nodes(ray.nodes())
        if not nodes:
            raise InputError(f"--verify-on: the Ray cluster at {self.address} has no node with CPUs")
        return sum(self._workers_of(n) for n in nodes)

    def _workers_of(self, node: NodeInfo) -> int:
        return self.node_workers or max(1, round(2 * node.cpus))

    # -- sandbox.pool.Backend ------------------------------------------------------------------

    async def start(self, limits: Limits, workers: int) -> None:
        self._limits = limits
        await self._place(alive_nodes(await asyncio.to_thread(ray.nodes)))
        if not self._nodes:
            raise SandboxError(
                f"no Ray node could start a sandbox pool ({self.sandbox}); see the warnings above"
            )
        log.info(
            "verifying on Ray: %d nodes, %d sandboxes (%s)",
            len(self._nodes),
            self._nodes.capacity,
            self.sandbox,
        )
        self._rescanning = asyncio.create_task(self._rescan_forever())

    async def run(
        self, program: str, limits: Limits, label: str = "", reserved: bool = False, data: bytes | None = None
    ) -> Outcome:
        """The program's outcome from one node; sent again to another if its node is lost first.
        `data` is never given: without `takes_data` the pool sends self-contained programs."""
        while (node := await self._next_node()) is not None:
            try:
                outcome = await self._run_on(node, program, limits, label, reserved)
            except NODE_LOST as exc:
                self._lose(node, exc)
                continue
            finally:
                self._nodes.release(node)
            self.metrics.verifications.labels(node, outcome.verdict.value).inc()
            return outcome
        return Outcome(
            Verdict.infra_error, f"no Ray node for {self.node_wait_s:.0f} s", 0.0, self.name, limits, ""
        )

    async def close(self) -> None:
        self._closed = True
        self._has_node.set()  # wake runs waiting for a node: they end
        if self._rescanning is not None:
            self._rescanning.cancel()
            await asyncio.gather(self._rescanning, return_exceptions=True)
        actors = list(self._actors.values())
        with contextlib.suppress(*NODE_LOST, asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(a.close.remote() for a in actors), return_exceptions=True), 10
            )
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        ray.shutdown()

    # -- nodes ----------------------------------------------------------------------------------

    async def _place(self, nodes: list[NodeInfo]) -> None:
        new = [n for n in nodes if n.label not in self._nodes and n.label not in self._starting]
        await asyncio.gather(*(self._start_actor(n) for n in new))

    async def _start_actor(self, node: NodeInfo) -> None:
        self._starting.add(node.label)
        remote = ray.remote(NodeSandbox).options(
            num_cpus=0,
            max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
        )
        actor: Any = remote.remote(
            self._workers_of(node), self._limits, self.sandbox
        )  # Ray types its methods loosely
        try:
            info = await asyncio.wait_for(actor.start.remote(), START_TIMEOUT_S)
        except (TimeoutError, *NODE_LOST) as exc:
            info = {"error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
        finally:
            self._starting.discard(node.label)
        if "error" in info or self._closed:
            log.warning("Ray node %s gets no samples: %s", node.label, info.get("error", "closing"))
            with contextlib.suppress(Exception):
                ray.kill(actor)
            return
        self._actors[node.label] = actor
        self._nodes.add(node.label, info["workers"])
        self._has_node.set()
        self._empty_since = None
        self.metrics.up.labels(node.label).set(1)
        self.metrics.sandboxes.labels(node.label).set(info["workers"])
        log.info("Ray node %s (%s): %d sandboxes", node.label, info["host"], info["workers"])

    def _lose(self, node: str, exc: BaseException) -> None:
        if node not in self._nodes:
            return  # another of its programs said so first
        self._nodes.remove(node)
        self.metrics.up.labels(node).set(0)
        actor = self._actors.pop(node)
        with contextlib.suppress(Exception):
            ray.kill(actor)
        log.warning("Ray node %s lost (%s): its programs go to the other nodes", node, type(exc).__name__)
        if not self._nodes:
            self._has_node.clear()
            self._empty_since = time.monotonic()

    async def _next_node(self) -> str | None:
        """A node for one program (counted busy until released); None once no node came for node_wait_s."""
        while not self._closed:
            if (node := self._nodes.acquire()) is not None:
                return node
            waited = time.monotonic() - (self._empty_since or time.monotonic())
            try:
                await asyncio.wait_for(self._has_node.wait(), max(0.0, self.node_wait_s - waited))
            except TimeoutError:
                return None
        return None

    async def _run_on(self, node: str, program: str, limits: Limits, label: str, reserved: bool) -> Outcome:
        ref = self._actors[node].run.remote(program, limits, label, reserved)
        try:
            return await ref
        except asyncio.CancelledError:
            ray.cancel(ref)  # the node kills the program's jail
            raise

    async def _rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.rescan_s)
            try:
                await self._place(alive_nodes(await asyncio.to_thread(ray.nodes)))
            except Exception as exc:  # the head unreachable for a while: look again later
                log.warning("Ray: cannot list the nodes (%s)", exc)
