"""Preflight on a dataset whose references fail some of their own tests (CodeContests has such
problems; the stdio fixture's `broken-reference` is one): `engine run` goes on, names the
problem in its summary (`--json` too), and `engine status` names it as well.

Invariant: flagged problems are exactly those whose reference fails, by name, never silently;
they stay scored (flagged, not excluded), so the run's problem count includes them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

STDIO = Path(__file__).resolve().parents[1] / "fixtures" / "tasks" / "stdio.jsonl"


def engine(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return done


def test_run_and_status_name_the_problems_whose_reference_fails(tmp_path):
    hosts = tmp_path / "hosts.txt"
    simulator = subprocess.Popen(
        [sys.executable, "-m", "engine", "simulate", "--servers", "1", "--hosts-file", str(hosts)],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not hosts.exists():
            assert simulator.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        run = tmp_path / "run"
        done = engine(
            *("run", "--servers", str(hosts), "--dataset", str(STDIO), "--task", "stdio"),
            *("--samples", "2", "--out", str(run), "--json", "--workers", "2"),
        )
    finally:
        simulator.send_signal(signal.SIGTERM)
        simulator.wait(timeout=30)
    summary = orjson.loads(done.stdout)
    problems = sum(1 for line in STDIO.read_bytes().splitlines() if line.strip())
    assert list(summary["flagged_references"]) == ["broken-reference"]
    assert summary["flagged_references"]["broken-reference"].startswith("failed")
    assert summary["problems"] == problems  # flagged, still scored
    status = orjson.loads(engine("status", str(run), "--json").stdout)
    assert status["flagged_references"] == summary["flagged_references"]
    assert "broken-reference" in engine("status", str(run)).stdout
