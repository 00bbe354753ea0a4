"""Programs of the output-comparing kinds: the driver's source (engine/tasks/driver.py), then one
call with the sample's configuration.

The test inputs are embedded in every sample's program for now (the fork-server's protocol has
no way yet to send a problem's test data to the jail once); the expected outputs never are: they
stay in the engine, where the judge compares (engine/tasks/judging.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DRIVER_SOURCE = (Path(__file__).parent / "driver.py").read_text(encoding="utf-8")
REPORT_BYTES = 1 << 20  # the output a program of these kinds may write (Task.report_bytes)
TEXT_BUDGET = 256 * 1024  # outputs sent whole, per sample; beyond it, digests only


def stdio_program(code: str, inputs: Sequence[str], test_s: float, *, run_all: bool) -> str:
    """Runs `code` once per input, the input on stdin; reports each run's stdout."""
    return _program({"mode": "stdio", "code": code, "inputs": list(inputs), "test_s": test_s, "all": run_all})


def call_program(
    code: str,
    function: str,
    inputs: Sequence[Sequence[Any]],
    test_s: float,
    *,
    run_all: bool,
    budget: int = TEXT_BUDGET,
) -> str:
    """Runs `code` once, then calls `function(*args)` for each argument list; reports each return
    value. `budget`: report text in all (the reference's runs need every value whole)."""
    config = {
        "mode": "call",
        "code": code,
        "fn": function,
        "inputs": [list(args) for args in inputs],
        "test_s": test_s,
        "all": run_all,
        "text_budget": budget,
    }
    return _program(config)


def _program(config: dict[str, Any]) -> str:
    config.setdefault("text_budget", TEXT_BUDGET)
    return DRIVER_SOURCE + f"\n_drive({json.dumps(json.dumps(config))})\n"
