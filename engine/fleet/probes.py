"""The fleet: model discovery (waiting for servers that are still loading), then health and
load probes and hosts-file reloads while the sweep runs. What a server's state is and what
follows from it is `engine.fleet.state`, pure; this module does the I/O."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from dataclasses import dataclass

import aiohttp
import orjson

from engine.errors import FleetError, InputError, UnauthorizedError
from engine.fleet.hosts import read_hosts
from engine.fleet.state import MAX_PROBE_BACKOFF_S, ProbeSchedule, ServerState, merge_hosts

log = logging.getLogger(__name__)

PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5)
MAX_PROBE_BYTES = 4 << 20  # a /v1/models, /metrics or /load answer; vLLM's are a few kB to ~100 kB
MAX_CREDIBLE_WAITING = 1_000_000  # requests a server may say it queues; more is not a count


class _TooLarge(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ModelsAnswer:
    models: list[str]
    problem: str | None  # why this server cannot be used, if it cannot
    reachable: bool  # something answered HTTP (it may still not be vLLM)
    adapters: frozenset[str] = frozenset()  # models with a parent (vLLM's LoRA adapters)


def choose_model(requested: str | None, answers: list[ModelsAnswer]) -> str:
    """The model of the sweep: `requested`, else the one base model the fleet serves (LoRA
    adapters are never taken implicitly). FleetError when that is not one model."""
    offered = {m for a in answers for m in a.models}
    if requested is not None:
        if requested not in offered:
            choices = _clip(", ".join(sorted(offered)))
            raise FleetError(f"model {requested!r} is not served by any server; they offer: {choices}")
        return requested
    bases = sorted({m for a in answers for m in a.models if m not in a.adapters})
    if len(bases) == 1:
        return bases[0]
    what, names = ("several models", bases) if bases else ("only adapters", sorted(offered))
    raise FleetError(f"the servers offer {what} ({_clip(', '.join(names))}); choose one with --model")


class Fleet:
    def __init__(
        self,
        urls: list[str],
        session: aiohttp.ClientSession,
        max_seqs: int,
        metrics=None,
        hosts_path: str | None = None,
        clock=time.monotonic,
    ):
        self.servers = [ServerState(url, max_seqs) for url in urls]
        self.model: str | None = None
        self.changed = asyncio.Event()  # set whenever a server may take work again
        self._session = session
        self._max_seqs = max_seqs
        self._metrics = metrics
        self._hosts_path = hosts_path
        self._hosts_stamp = _stamp(hosts_path)
        self._clock = clock
        self._verified: set[str] = set()  # servers whose /v1/models lists our model
        self._probes = ProbeSchedule()
        self._load_source: dict[str, str] = {}  # url -> "metrics" | "load" | "none"
        self._fleet_down_since: float | None = None

    # -- start --------------------------------------------------------------------------------

    async def discover(self, model: str | None, startup_timeout: float = 0.0) -> str:
        """The model to use, once some server serves it. Servers that are unreachable may still
        be loading their model (vLLM takes minutes): wait for them up to `startup_timeout`.
        Servers that answer but are not vLLM, or serve other models, are an error at once."""
        deadline = self._clock() + startup_timeout
        delay = 1.0
        announced = False
        while True:
            answers = await asyncio.gather(*(self._models(s.url) for s in self.servers))
            if any(a.models for a in answers):
                self.model = choose_model(model, answers)
                for server, answer in zip(self.servers, answers):
                    self._set_up(server, self.model in answer.models)
                    if self.model in answer.models:
                        self._verified.add(server.url)
                    elif answer.models:
                        log.warning(
                            "%s serves %s, not %s: not using it",
                            server.url,
                            ", ".join(answer.models),
                            self.model,
                        )
                return self.model
            problems = "; ".join(f"{s.url}: {a.problem}" for s, a in zip(self.servers, answers))
            if all(a.reachable for a in answers):
                raise FleetError(f"no server answered as a vLLM server would ({_clip(problems)})")
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise FleetError(f"no server answered within {startup_timeout:.0f} s ({_clip(problems)})")
            if not announced:
                log.warning(
                    "waiting for the fleet: no server answers yet (vLLM can take minutes to load a model);"
                    " giving up in %.0f s (--startup-timeout)",
                    remaining,
                )
                announced = True
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 15.0)

    # -- while the sweep runs -------------------------------------------------------------------

    async def watch(self, interval: float = 2.0) -> None:
        """Health, load and hosts-file changes, for the whole sweep. Down servers are probed
        with exponential backoff; a fleet entirely down is reported once, and again when back."""
        while True:
            await asyncio.sleep(interval)
            self._reload_hosts()
            now = self._clock()
            due = [s for s in self.servers if self._probes.due(s.url, now)]
            await asyncio.gather(*(self._probe(s, interval) for s in due))
            self._report_fleet()

    def mark_down(self, server: ServerState) -> None:
        """A request could not even connect: stop giving the server work until a probe says so."""
        if server.up:
            log.warning("%s refused a connection; marking it down", server.url)
        self._set_up(server, False)
        self._probes.refused(server.url, self._clock())

    def any_up(self) -> bool:
        return any(s.serving for s in self.servers)

    async def _probe(self, server: ServerState, interval: float) -> None:
        if server.url in self._verified:
            healthy = await self._healthy(server.url)
        else:  # new or never seen serving our model: ask for the model list first
            try:
                answer = await self._models(server.url)
            except UnauthorizedError as exc:  # a server that joined with other credentials: not ours
                answer = ModelsAnswer([], str(exc), True)
                log.warning("%s", exc)
            healthy = self.model in answer.models
            if healthy:
                self._verified.add(server.url)
            elif answer.models:
                log.warning(
                    "%s serves %s, not %s: not using it", server.url, ", ".join(answer.models), self.model
                )
        if healthy != server.up:
            log.warning("%s is %s", server.url, "up" if healthy else "down")
        self._set_up(server, healthy)
        if healthy:
            server.set_waiting(await self._waiting(server))
            self._probes.healthy(server.url, self._clock(), interval)
        else:
            self._probes.unhealthy(server.url, self._clock())

    def _report_fleet(self) -> None:
        if self.any_up():
            if self._fleet_down_since is not None:
                up = sum(s.up for s in self.servers)
                log.warning(
                    "fleet back after %.0f s: %d of %d servers up",
                    self._clock() - self._fleet_down_since,
                    up,
                    len(self.servers),
                )
                self._fleet_down_since = None
        elif self._fleet_down_since is None:
            self._fleet_down_since = self._clock()
            log.warning(
                "all %d servers are down; waiting for them (probing with backoff up to %.0f s)",
                len(self.servers),
                MAX_PROBE_BACKOFF_S,
            )

    def _reload_hosts(self) -> None:
        stamp = _stamp(self._hosts_path)
        if self._hosts_path is None or stamp == self._hosts_stamp:
            return
        self._hosts_stamp = stamp
        try:
            urls = read_hosts(self._hosts_path)
        except InputError as exc:
            log.warning("hosts file changed but cannot be used, keeping the current fleet: %s", exc)
            return
        change = merge_hosts(self.servers, urls, self._max_seqs)
        for url in change.joined:
            log.warning("%s joined the fleet", url)
        for url in change.rejoined:
            log.warning("%s rejoined the fleet", url)
        for server in self.servers:
            if server.url in change.left:
                log.warning("%s left the fleet; its running requests finish", server.url)
                self._set_up(server, server.up)  # engine_server_up goes to 0
        self.servers = change.servers
        self.changed.set()

    def _set_up(self, server: ServerState, up: bool) -> None:
        if server.set_up(up):
            self.changed.set()
        if self._metrics is not None:
            self._metrics.server_up.labels(server.url).set(1 if server.serving else 0)

    # -- probes -------------------------------------------------------------------------------

    async def _models(self, url: str) -> ModelsAnswer:
        try:
            async with self._session.get(url + "/v1/models", timeout=PROBE_TIMEOUT) as response:
                body = await _read_capped(response)
                status = response.status
        except _TooLarge:
            return ModelsAnswer([], f"/v1/models answered more than {MAX_PROBE_BYTES} bytes", True)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return ModelsAnswer([], f"unreachable ({type(exc).__name__})", False)
        if status in (401, 403):  # vLLM's --api-key guards /v1/*: asking again cannot help
            raise UnauthorizedError(f"{url}/v1/models answered HTTP {status}: check --api-key and --header")
        if status != 200:
            return ModelsAnswer([], f"/v1/models answered HTTP {status}", True)
        try:
            entries = [m for m in orjson.loads(body)["data"] if isinstance(m.get("id"), str)]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return ModelsAnswer([], "/v1/models did not return an OpenAI model list", True)
        models = [m["id"] for m in entries]
        adapters = frozenset(m["id"] for m in entries if m.get("parent"))
        return ModelsAnswer(models, None if models else "/v1/models lists no model", True, adapters)

    async def _healthy(self, url: str) -> bool:
        try:
            async with self._session.get(url + "/health", timeout=PROBE_TIMEOUT) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def _waiting(self, server: ServerState) -> int:
        """Requests queued inside the server: vLLM's vllm:num_requests_waiting, else /load."""
        source = self._load_source.get(server.url, "metrics")
        try:
            if source == "metrics":
                async with self._session.get(server.url + "/metrics", timeout=PROBE_TIMEOUT) as response:
                    if response.status == 200:
                        waiting = _waiting_from_metrics(
                            (await _read_capped(response)).decode("utf-8", "replace")
                        )
                        if waiting is not None:
                            return waiting
                self._load_source[server.url] = source = "load"
            if source == "load":
                async with self._session.get(server.url + "/load", timeout=PROBE_TIMEOUT) as response:
                    if response.status == 200:
                        load = orjson.loads(await _read_capped(response)).get("server_load")
                        if (
                            type(load) is int and 0 <= load <= MAX_CREDIBLE_WAITING
                        ):  # counts our own requests too
                            return max(0, load - server.inflight_requests)
                self._load_source[server.url] = "none"
        except (
            TimeoutError,
            aiohttp.ClientError,
            OSError,
            orjson.JSONDecodeError,
            AttributeError,
            _TooLarge,
        ):
            pass
        return 0


async def _read_capped(response: aiohttp.ClientResponse, limit: int = MAX_PROBE_BYTES) -> bytes:
    """A probe's body, or _TooLarge as soon as it passes `limit` (a server cannot fill our memory)."""
    body = bytearray()
    async for piece in response.content.iter_any():
        body += piece
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def _waiting_from_metrics(text: str) -> int | None:
    """vllm:num_requests_waiting summed over its series; None when the metric is absent. A value
    that is not a count (NaN, infinite, negative, absurd) says nothing: it counts as 0."""
    total, seen = 0, False
    for line in text.splitlines():
        if line.startswith("vllm:num_requests_waiting"):
            seen = True
            try:
                value = float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
            if math.isfinite(value) and 0 <= value <= MAX_CREDIBLE_WAITING:
                total += int(value)
    return min(total, MAX_CREDIBLE_WAITING) if seen else None


def _stamp(path: str | None):
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
