"""The driver's program is self-contained: driver.py with encoding.py's source in place of its
import, so it runs where the engine cannot be imported (the jail). Run here without site
packages (`python -I -S`: no engine), it reports every test of a stdin/stdout and a call-based
program, and its encodings are the engine's own (the engine decodes what it writes)."""

from __future__ import annotations

import json
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tasks.encoding import canonical_json, canonical_stdout, digest, encode
from engine.tasks.programs import DRIVER_SOURCE, call_program, stdio_program


def run_isolated(program: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_program_never_imports_the_engine():
    assert "from engine" not in DRIVER_SOURCE and "import engine" not in DRIVER_SOURCE
    assert DRIVER_SOURCE.count("def encode(") == 1


@settings(max_examples=5, deadline=None)
@given(inputs=st.lists(st.text("ab 1\n", max_size=12), min_size=0, max_size=3))
def test_stdio_reports_every_test_with_the_engines_digest(inputs):
    records = run_isolated(
        stdio_program("print(input() if True else '')", [i + "\n" for i in inputs], 5.0, run_all=True)
    )
    tests, end = records[:-1], records[-1]
    assert end == {"end": len(inputs)} and [r["t"] for r in tests] == list(range(len(inputs)))
    for record, given_input in zip(tests, inputs, strict=True):
        line = given_input.split("\n")[0]
        if record["s"] == "ok":
            assert record["d"] == digest(canonical_stdout(line + "\n"))


@settings(max_examples=5, deadline=None)
@given(values=st.lists(st.integers() | st.text(max_size=5) | st.lists(st.booleans(), max_size=3), max_size=3))
def test_call_values_are_encoded_as_the_engine_encodes_them(values):
    records = run_isolated(
        call_program("def f(x):\n    return x\n", "f", [[v] for v in values], 5.0, run_all=True)
    )
    assert records[-1] == {"end": len(values)}
    for record, value in zip(records[:-1], values, strict=True):
        assert record["s"] == "ok" and record["x"] == canonical_json(encode(value)), record
