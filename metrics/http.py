"""Serve /metrics on the caller's own event loop, every series labelled with the run's id, and
the live page: / (metrics/page.html) and the JSON it polls, /api/state."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.metrics_core import Metric

from engine.errors import InputError
from metrics.page import PageData

PAGE = Path(__file__).with_name("page.html")


class RunLabelled:
    """A collector that shows another registry's series with run_id="<id>" added, so several
    sweeps on one Prometheus stay apart. The engine's own registry stays unlabelled."""

    def __init__(self, registry: CollectorRegistry, run_id: str):
        self._registry = registry
        self._run_id = run_id

    def collect(self):
        for family in self._registry.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                s._replace(labels={**s.labels, "run_id": self._run_id}) for s in family.samples
            ]
            yield labelled


class MetricsServer:
    """/metrics over aiohttp; counts scrapes so a finished sweep can wait for the one that
    records its final state.

    It may start before the run's id is known (a port in use should end the command before it
    touches --out): with run_id=None, /metrics answers with no series until `label()` names the
    run, so no series ever goes out without its run_id. run_id="" serves the registry as it is.
    The live page answers 503 until `show()` gives it its data."""

    def __init__(self, registry: CollectorRegistry, run_id: str | None = "", page: PageData | None = None):
        self._registry = registry
        self._handler = make_aiohttp_handler(
            CollectorRegistry(auto_describe=False)
        )  # nothing, until labelled
        if run_id is not None:
            self.label(run_id)
        self._page = page
        self._html = PAGE.read_bytes()
        self.app = web.Application()
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/api/state", self._state)
        self.scrapes = 0
        self._scraped = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._recorder: asyncio.Task | None = None

    def label(self, run_id: str) -> None:
        """From now on every series goes out with run_id="<run_id>" ("": as the registry has them)."""
        exposed = CollectorRegistry(auto_describe=False)
        exposed.register(RunLabelled(self._registry, run_id))
        self._handler = make_aiohttp_handler(exposed if run_id else self._registry)

    def show(self, page: PageData) -> None:
        """Serve the live page from `page` (and sample its history) from now on."""
        self._page = page
        if self._runner is not None and self._recorder is None:
            self._recorder = asyncio.create_task(page.record_history())

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        response = await self._handler(request)
        self.scrapes += 1
        self._scraped.set()
        return response

    async def _index(self, request: web.Request) -> web.Response:
        if self._page is None:
            raise web.HTTPServiceUnavailable(text="the sweep is starting; reload in a few seconds")
        return web.Response(body=self._html, content_type="text/html", charset="utf-8")

    async def _state(self, request: web.Request) -> web.Response:
        """The page's figures, and the chart points after ?since= (unix time; all of them without)."""
        try:
            since = float(request.query.get("since", 0))
        except ValueError:
            raise web.HTTPBadRequest(text="since: a unix time") from None
        if self._page is None:
            raise web.HTTPServiceUnavailable(text="the sweep is starting")
        body = {**await self._page.snapshot_async(), "history": self._page.history(since)}
        return web.Response(
            body=orjson.dumps(body), content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (the real one when port=0). A port in use or an address
        not of this host is bad input (InputError), not a crash."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise InputError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
                " (another --metrics-port, or --no-metrics)"
            ) from exc
        if self._page is not None:
            self._recorder = asyncio.create_task(self._page.record_history())
        return self._runner.addresses[0][1]

    async def next_scrape(self, timeout: float) -> bool:
        """Wait for the next scrape, if anyone has scraped so far; False when nobody came."""
        if not self.scrapes:
            return False
        self._scraped.clear()
        try:
            await asyncio.wait_for(self._scraped.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def cleanup(self) -> None:
        if self._recorder is not None:
            self._recorder.cancel()
        if self._runner is not None:
            await self._runner.cleanup()


async def serve_metrics(
    registry: CollectorRegistry, host: str, port: int, run_id: str | None = "", page: PageData | None = None
) -> tuple[MetricsServer, int]:
    """Start the endpoint; returns the server (call `cleanup()`) and the bound port. With run_id
    "" the series go out as the registry has them, with None none until `label()`; without a
    page, / is not served."""
    server = MetricsServer(registry, run_id, page)
    return server, await server.start(host, port)
