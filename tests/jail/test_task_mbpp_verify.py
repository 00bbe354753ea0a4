"""`engine verify --task mbpp` on the MBPP fixture: preflight passes (references pass, known-bad
completions fail), and each sample of tests/fixtures/tasks/mbpp_samples.jsonl (references, wrong
answers, hostile ones) gets the verdict its line expects, with and without the guards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tasks"


@pytest.mark.parametrize("guards", [True, False])
def test_every_fixture_sample_gets_its_expected_verdict(tmp_path, guards):
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "engine", "verify", FIXTURES / "mbpp_samples.jsonl", "--task", "mbpp"]
    command += ["--dataset", FIXTURES / "mbpp.jsonl", "--out", out, "--json", "--workers", "2"]
    result = subprocess.run(
        [*map(str, command), *([] if guards else ["--no-guards"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "preflight passed: 6 canonical solutions pass" in result.stderr
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    expected = "expect" if guards else "expect_unguarded"
    # Invariant: only references pass under guards; without them, only the hostile samples that
    # also pass MBPP's own evaluation (one exec of code then asserts) pass as well.
    assert [(r["why"], r["result"]) for r in rows] == [(r["why"], r[expected]) for r in rows]
    assert {r["task_kind"] for r in rows} == {"mbpp"}
    summary = orjson.loads(result.stdout)
    assert summary["samples"] == len(rows) and summary["verdicts"]["passed"] == sum(
        r[expected] == "passed" for r in rows
    )
