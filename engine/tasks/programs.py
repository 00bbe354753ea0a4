"""Programs of the output-comparing kinds: the driver's source (engine/tasks/driver.py), then one
call with the sample's configuration.

The test inputs travel either embedded in the program (inputs given: a self-contained program)
or, with `inputs=None`, as the problem's data blob (`inputs_data`), which the sandbox sends to
each jail once per problem rather than once per sample (pool.run(..., data=)); the driver then
reads them from it. The expected outputs never enter the jail: they stay in the engine, where
the judge compares (engine/tasks/judging.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _driver_source() -> str:
    """driver.py with encoding.py's source in place of its import of it: one self-contained program."""
    here = Path(__file__).parent
    driver, encoding = ((here / name).read_text(encoding="utf-8") for name in ("driver.py", "encoding.py"))
    lines = driver.splitlines(keepends=True)
    [at] = [i for i, line in enumerate(lines) if line.startswith("from engine.tasks.encoding import")]
    return "".join(lines[:at]) + encoding + "".join(lines[at + 1 :])


DRIVER_SOURCE = _driver_source()
REPORT_BYTES = 1 << 20  # the output a program of these kinds may write (Task.report_bytes)
TEXT_BUDGET = 256 * 1024  # outputs sent whole, per sample; beyond it, digests only


def inputs_data(inputs: Sequence[Any]) -> bytes:
    """The problem's data blob: its test inputs as JSON, encoded once per inputs list (every
    sample of a problem sends the same bytes object, so the sandbox hashes it once)."""
    held = _DATA.get(id(inputs))
    if held is None or held[0] is not inputs:
        if len(_DATA) >= 256:
            _DATA.pop(next(iter(_DATA)))
        held = _DATA[id(inputs)] = (inputs, json.dumps(list(inputs)).encode("utf-8"))
    return held[1]


_DATA: dict[int, tuple[Sequence[Any], bytes]] = {}  # id -> (the inputs, kept alive; their blob)


def stdio_program(code: str, inputs: Sequence[str] | None, test_s: float, *, run_all: bool) -> str:
    """Runs `code` once per input, the input on stdin; reports each run's stdout. `inputs=None`:
    read from the problem's data blob (`inputs_data`)."""
    config = {"mode": "stdio", "code": code, "test_s": test_s, "all": run_all}
    if inputs is not None:
        config["inputs"] = list(inputs)
    return _program(config)


def call_program(
    code: str,
    function: str,
    inputs: Sequence[Sequence[Any]] | None,
    test_s: float,
    *,
    run_all: bool,
    budget: int = TEXT_BUDGET,
) -> str:
    """Runs `code` once, then calls `function(*args)` for each argument list; reports each return
    value. `budget`: report text in all (the reference's runs need every value whole).
    `inputs=None`: read from the problem's data blob (`inputs_data`)."""
    config: dict[str, Any] = {"mode": "call", "code": code, "fn": function, "test_s": test_s, "all": run_all}
    config["text_budget"] = budget
    if inputs is not None:
        config["inputs"] = [list(args) for args in inputs]
    return _program(config)


def _program(config: dict[str, Any]) -> str:
    config.setdefault("text_budget", TEXT_BUDGET)
    return DRIVER_SOURCE + f"\n_drive({json.dumps(json.dumps(config))})\n"
