"""Every benchmark in bench/ runs: each script, at the smallest sizes its options allow, exits 0
and prints its figures (a line it always prints). Timings are never asserted: these runs only
prove the scripts have not rotted. A script added to bench/ without an entry here fails
test_every_script_has_a_smoke_run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
HELPERS = {"procstat", "simfleet"}  # imported by the scripts, not run on their own

# script -> (smallest arguments, a line it always prints when it has measured something)
SMOKE = {
    "agreement": (["--problems", "2"], "engine verify guards"),
    # e2e: its header; the "steady state" summary needs a longer run than a smoke run
    "e2e": (["--samples", "1", "--servers", "1", "--every", "0.5"], "tok/s"),
    "kinds": (
        ["--rounds", "1", "--problems", "1", "--tests", "2", "--megabytes", "0.01", "--samples", "1"],
        "medians over 1 rounds",
    ),
    "fork_cost": (["--forks", "2", "--megabytes", "0", "1", "--problems", "2"], "CPU per program"),
    "guards_cost": (["--rounds", "1", "--problems", "2"], "medians over 1 rounds"),
    "page_cost": (["--samples", "1", "--repeat", "1"], "/api/state build:"),
    "problem_data": (["--samples", "1", "--workers", "1"], "MB written to jails"),
    "report": (["--samples", "2", "--backtest", "1"], "observed pass@"),
    "report_coverage": (["--trials", "1", "--boots", "1", "--samples", "1"], "1 trials of"),
    "simulator": (["--servers", "1", "--warmup", "0", "--seconds", "1"], "achieved"),
    "startup_timeline": (["--runs", "1"], "exit; heavy libraries imported"),
    "soak": (["--samples", "1", "--minutes", "0.05", "--every", "1", "--servers", "1"], "store: "),
    "stream": (
        ["--requests", "1", "--n", "1", "--tokens", "1", "--rounds", "1", "--clients", "aiohttp", "engine"],
        "median CPU-s per million tokens",
    ),
    "verify": (["--rounds", "1", "--problems", "2"], "medians over 1 rounds"),
    "verify_scale": (["--rounds", "1", "--samples", "2", "--only", "cpu"], "done"),
}
TIMEOUT_S = 150  # each run is under a minute on an idle 2-core machine; bench/report.py takes ~30 s of CPU


def test_every_script_has_a_smoke_run():
    """Invariant: the scripts in bench/ are exactly the smoke-tested ones plus the helpers."""
    scripts = {path.stem for path in BENCH.glob("*.py")}
    assert scripts - HELPERS == set(SMOKE), "a script in bench/ has no smoke run (or an entry has no script)"


@pytest.mark.parametrize("helper", sorted(HELPERS))
def test_helper_imports(helper):
    spec = importlib.util.spec_from_file_location(helper, BENCH / f"{helper}.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_script_runs_at_tiny_sizes(script):
    """Invariant: exit status 0, and the line the script prints whenever it measured something."""
    args, line = SMOKE[script]
    result = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, f"{script} exited {result.returncode}:\n{result.stderr[-3000:]}"
    assert line in result.stdout, f"{script} did not print {line!r}:\n{result.stdout[-3000:]}"
