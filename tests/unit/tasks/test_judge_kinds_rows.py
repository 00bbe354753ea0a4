"""Rows of the output-comparing kinds (stdio, call, evalplus): what each becomes, and bad rows
refused with one line naming the row (exit status 2 from the command, never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.errors import DatasetError
from engine.tasks import TASKS, detect, load_dataset

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tasks"
STDIO = {"name": "p", "description": "d", "public_tests": {"input": ["1\n"], "output": ["1\n"]}}
CALL = {
    "problem_id": 1,
    "question": "q",
    "starter_code": "",
    "input_output": {"fn_name": "f", "inputs": [[1]], "outputs": [1]},
}
EVALPLUS = {
    "task_id": "t",
    "prompt": "def f(x):\n",
    "canonical_solution": "    return x\n",
    "entry_point": "f",
}
EVALPLUS |= {"base_input": [[1]], "plus_input": [[2]], "test": ""}


@pytest.mark.parametrize("kind", ["stdio", "call", "evalplus"])
def test_fixtures_are_detected_as_their_kind(kind: str) -> None:
    loaded = load_dataset(str(FIXTURES / f"{kind}.jsonl"))
    assert loaded.task.name == kind and loaded.problems
    for p in loaded.problems:
        assert p.kind == kind and len(p.payload["inputs"]) >= 1


@pytest.mark.parametrize(
    "row, kind, message",
    [
        ({**STDIO, "public_tests": {"input": ["1"], "output": []}}, "stdio", "1 inputs but 0 outputs"),
        ({**STDIO, "public_tests": {"input": [], "output": []}}, "stdio", "no tests"),
        ({**STDIO, "public_tests": ["x"]}, "stdio", "public_tests must be"),
        ({**STDIO, "public_tests": "{not json"}, "stdio", "not valid JSON"),
        ({**STDIO, "float_tolerance": "big"}, "stdio", "float_tolerance"),
        ({**STDIO, "time_limit": -1}, "stdio", "time_limit"),
        ({**STDIO, "description": ""}, "stdio", "lacks description"),
        ({**CALL, "input_output": {"inputs": [[1]], "outputs": [1]}}, "call", "no fn_name"),
        ({**CALL, "input_output": {"fn_name": "f", "inputs": [1], "outputs": [1]}}, "call", "argument lists"),
        (
            {**CALL, "input_output": {"fn_name": "f", "inputs": [[1]], "outputs": []}},
            "call",
            "as many outputs",
        ),
        ({**CALL, "time_limit": "x"}, "call", "time_limit"),
        ({**EVALPLUS, "base_input": []}, "evalplus", "base_input is empty"),
        ({**EVALPLUS, "atol": "x"}, "evalplus", "atol"),
        ({**EVALPLUS, "plus_input": [3]}, "evalplus", "argument lists"),
    ],
)
def test_bad_rows_are_one_line_naming_the_row(row: dict[str, Any], kind: str, message: str) -> None:
    good = {"stdio": STDIO, "call": CALL, "evalplus": EVALPLUS}[kind]
    with pytest.raises(DatasetError) as caught:
        TASKS[kind].problems([good, row], "data.jsonl")
    text = str(caught.value)
    assert "row 2" in text and message in text and "\n" not in text


def test_detection_prefers_the_most_specific_kind() -> None:
    """A HumanEval+ row is a HumanEval row too: evalplus asks for more fields."""
    assert detect([EVALPLUS]) == "evalplus"
    assert detect([STDIO]) == "stdio"
    assert detect([CALL]) == "call"


def test_call_reference_closes_the_stub_or_continues_it() -> None:
    row = {
        **CALL,
        "starter_code": "class Solution:\n    def f(self, x):\n        ",
        "solutions": ["return x\n"],
    }
    (bare,) = TASKS["call"].problems([row], "d")
    whole = {**row, "solutions": ["class Solution:\n    def f(self, x):\n        return x\n"]}
    (full,) = TASKS["call"].problems([whole], "d")
    for p in (bare, full):
        source = p.prompt + (p.payload["canonical_solution"] or "")
        compile(source, "<candidate>", "exec")  # valid Python either way
        namespace: dict[str, Any] = {}
        exec(source, namespace)
        assert namespace["Solution"]().f(3) == 3


def test_engine_verify_bad_dataset_is_one_line_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({**STDIO, "public_tests": {"input": ["1"], "output": []}}) + "\n")
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "p", "completion": ""}) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "engine", "verify", str(samples), "--dataset", str(data), "--task", "stdio"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "row 1" in done.stderr and "Traceback" not in done.stderr
