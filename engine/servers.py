"""The fleet: model discovery at start, health checks while the sweep runs."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import aiohttp
import orjson

from engine.errors import FleetError
from engine.scheduler import ServerState

log = logging.getLogger(__name__)

PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5)


class Fleet:
    def __init__(self, urls: list[str], session: aiohttp.ClientSession, max_seqs: int, metrics=None):
        self.servers = [ServerState(url, max_seqs) for url in urls]
        self._session = session
        self._metrics = metrics
        self.changed = asyncio.Event()  # set whenever a server comes up or frees capacity

    async def discover(self, model: str | None) -> str:
        """Ask every server for its models; returns the model to use. Servers that do not
        answer like vLLM stay down. Raises FleetError when no server can serve the model."""
        answers = await asyncio.gather(*(self._models(s.url) for s in self.servers))
        offered: Counter[str] = Counter()
        problems = []
        for server, (models, problem) in zip(self.servers, answers):
            if problem:
                problems.append(f"{server.url}: {problem}")
            offered.update(models)
        if not offered:
            raise FleetError("no server answered as a vLLM server would (" + "; ".join(problems[:3]) + ")")
        if model is None:
            model = offered.most_common(1)[0][0]
        elif model not in offered:
            raise FleetError(f"model {model!r} is not served by any server; they offer: {', '.join(sorted(offered))}")
        for server, (models, _) in zip(self.servers, answers):
            self._set_up(server, model in models)
            if models and model not in models:
                log.warning("%s does not serve %s (it offers %s); not using it", server.url, model, ", ".join(models))
        return model

    async def watch_health(self, interval: float = 5.0) -> None:
        """Runs for the whole sweep: a server that stops answering /health is not given work."""
        while True:
            await asyncio.sleep(interval)
            results = await asyncio.gather(*(self._healthy(s.url) for s in self.servers))
            for server, healthy in zip(self.servers, results):
                if healthy != server.up:
                    log.warning("%s is %s", server.url, "back up" if healthy else "down")
                self._set_up(server, healthy)

    def _set_up(self, server: ServerState, up: bool) -> None:
        if up and not server.up:
            self.changed.set()
        server.up = up
        if self._metrics is not None:
            self._metrics.server_up.labels(server.url).set(1 if up else 0)

    async def _models(self, url: str) -> tuple[list[str], str | None]:
        try:
            async with self._session.get(url + "/v1/models", timeout=PROBE_TIMEOUT) as response:
                body = await response.read()
                if response.status != 200:
                    return [], f"/v1/models answered HTTP {response.status}"
            listing = orjson.loads(body)
            models = [m["id"] for m in listing["data"] if isinstance(m.get("id"), str)]
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return [], f"unreachable ({type(exc).__name__})"
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return [], "/v1/models did not return an OpenAI model list"
        return models, None if models else "/v1/models lists no model"

    async def _healthy(self, url: str) -> bool:
        try:
            async with self._session.get(url + "/health", timeout=PROBE_TIMEOUT) as response:
                return response.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False
