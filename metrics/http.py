"""Serve /metrics on the caller's own event loop."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the endpoint; returns the runner (call `cleanup()` to stop) and the bound port."""
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]  # the real port when port=0
