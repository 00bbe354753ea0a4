"""Where samples are verified (--verify-on): this machine's sandboxes, or every node's of a Ray
cluster. Either way the engine gets one sandbox.SandboxPool, so the verifier, the sweep and
`engine verify` do not know which.

    pool = open_pool(settings, registry)     # not started: `async with pool:` starts it

Modules: dispatch (which node runs the next program), node (the actor on each node: sandbox/
only), ray_backend (the engine's side: placement, re-dispatch when a node is lost, per-node
metrics). Ray is an optional extra: imported only for --verify-on ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.config import SandboxSettings
from engine.errors import InputError
from sandbox import SandboxPool

if TYPE_CHECKING:  # only Ray's per-node metrics take a registry: no prometheus_client for local pools
    from prometheus_client import CollectorRegistry

LOCAL = "local"
RAY_INSTALL = "pip install 'engine[ray]'"


def open_pool(settings: SandboxSettings, registry: CollectorRegistry | None = None) -> SandboxPool:
    """The pool `settings.verify_on` names; InputError (one line) when Ray is missing or no cluster answers."""
    if settings.verify_on == LOCAL:
        return SandboxPool(workers=settings.workers, limits=settings.limits, backend=settings.backend)
    try:
        from engine.remote.ray_backend import NodeMetrics, RayBackend, ray_address
    except ImportError as exc:
        raise InputError(
            f"--verify-on {settings.verify_on} needs Ray, which is not installed ({exc.name}): {RAY_INSTALL}"
        ) from None
    backend = RayBackend(
        ray_address(settings.verify_on),
        sandbox=settings.backend,
        node_workers=settings.node_workers,
        metrics=NodeMetrics(registry),
    )
    return SandboxPool(workers=backend.connect(), limits=settings.limits, backend=backend)
