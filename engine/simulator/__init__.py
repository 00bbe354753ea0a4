"""A simulated vLLM fleet: vLLM 0.32's OpenAI-compatible API over a SYNTHETIC model, no GPU.

    config    settings of one server (vLLM names and defaults)
    tokens    BPE-like token splitting (no vocabulary)
    mutations plausible wrong answers made from canonical solutions
    filler    generic code-like text
    model     the synthetic model: prompt + sample seed -> sample
    stops     vLLM's stop-string rules (pure)
    plans     per-step emission plans, pre-encoded and shared
    protocol  request parsing and validation, vLLM's error messages
    wire      the bytes of chunks, bodies and errors
    batch     continuous batching at a fixed token rate (the hot path)
    metrics   vLLM's Prometheus metrics, per server
    app       the aiohttp routes of one server
    fleet     SimulatedServer and SimulatedFleet: lifecycle on one event loop
    faults    the --faults spec: parsing, validation, per-request draws (pure)
    injection carrying faults out: per server, per stream, per fleet (scheduled events)
    command   the `engine simulate` click command
"""

from engine.simulator.config import SimulatorConfig
from engine.simulator.faults import FaultSpec, FaultSpecError, parse_faults

_LAZY = {"SimulatedFleet": "fleet", "SimulatedServer": "fleet", "SyntheticModel": "model"}


def __getattr__(name: str):
    """The servers (aiohttp, numpy) load on first use: `engine verify` never needs them."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"engine.simulator.{_LAZY[name]}"), name)

__all__ = ["FaultSpec", "FaultSpecError", "SimulatedFleet", "SimulatedServer", "SimulatorConfig", "SyntheticModel",
           "parse_faults"]
