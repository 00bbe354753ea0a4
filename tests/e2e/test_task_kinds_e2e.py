"""Every task kind other than HumanEval end to end, as a user runs it: `engine run --dataset
<fixture> --task <kind>` against `engine simulate --dataset <fixture>` (completions and chat),
then `engine export`, `engine report` and the same command again; and `engine verify --task
<kind>` on references, wrong and hostile answers, one verdict table per kind.

Invariants: exit status 0; every planned sample (problems x samples) stored exactly once, with
a verdict; export rows carry the kind; a resume adds nothing; a fixture problem whose reference
fails its own tests is named in the run's warning, never passed by its reference; each verify
sample gets exactly the verdict its table row states.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
import pytest
from fleet_process import ENGINE, simulated_fleet

from engine.tasks import load_dataset

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
KINDS = ["mbpp", "stdio", "call", "evalplus"]
SAMPLES = 3
TIMEOUT_S = 180
# CodeContests-style: the stdio fixture's one problem whose reference fails its own test 3
FLAGGED = {"stdio": "broken-reference"}


def engine(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENGINE, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT_S, env=env
    )


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """HOME in tmp_path: EvalPlus' expected-output cache starts empty and stays the test's."""
    return {**os.environ, "HOME": str(tmp_path / "home")}


@pytest.mark.parametrize("api", ["completions", "chat"])
@pytest.mark.parametrize("kind", KINDS)
def test_simulated_run_export_report_resume(tmp_path, kind, api):
    fixture = FIXTURES / f"{kind}.jsonl"
    problems = [p.task_id for p in load_dataset(str(fixture)).problems]
    env = isolated_env(tmp_path)
    out = tmp_path / "run"
    with simulated_fleet(tmp_path, 1, 20_000, "--dataset", str(fixture)) as hosts:
        run = [
            "run",
            "--servers",
            hosts,
            "--dataset",
            fixture,
            "--task",
            kind,
            "--api",
            api,
            "--samples",
            SAMPLES,
            "--out",
            out,
            "--json",
            "--workers",
            2,
            "--metrics-port",
            0,
        ]
        first = engine(*run, env=env)
        again = engine(*run, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = orjson.loads(first.stdout)
    assert summary["samples"] == summary["target"] == len(problems) * SAMPLES
    assert sum(summary["verdicts"].values()) == summary["samples"] and summary["missing"] == 0
    assert summary["verdicts"]["passed"] > 0  # the simulated model answers with references too

    exported = tmp_path / "samples.jsonl"
    assert engine("export", out, "--out", exported).returncode == 0
    rows = [orjson.loads(line) for line in exported.read_bytes().splitlines()]
    assert sorted((r["task_id"], r["sample_index"]) for r in rows) == sorted(
        (t, i) for t in problems for i in range(SAMPLES)
    )
    assert {r["task_kind"] for r in rows} == {kind}
    assert sum(r["passed"] for r in rows) == summary["verdicts"]["passed"]

    if kind in FLAGGED:
        flagged = FLAGGED[kind]
        assert f"did not pass ({flagged}): flagged" in first.stderr
        assert not any(r["passed"] for r in rows if r["task_id"] == flagged)

    report = engine("report", out, "--no-plot", env=env)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "pass@" in report.stdout

    assert again.returncode == 0, again.stderr[-3000:]
    resumed = orjson.loads(again.stdout)
    assert resumed["new_samples"] == 0 and resumed["new_tokens"] == 0
    assert resumed["pass_at_k"] == summary["pass_at_k"]
    assert engine("export", out, "--out", exported).returncode == 0
    assert len(exported.read_bytes().splitlines()) == len(rows)


# -- engine verify: one table per kind (task_id, completion, expected verdict) -------------------

Row = tuple[str, str, str]

STDIO: dict[str, Row] = {
    "reference": ("sum-of-two", "a, b = map(int, input().split())\nprint(a + b)\n", "passed"),
    "full float within tolerance": (
        "mean",
        "input()\nxs = list(map(int, input().split()))\nprint(sum(xs) / len(xs))\n",
        "passed",
    ),
    "extra blank lines and spaces": (
        "reverse-lines",
        "import sys\nfor line in reversed(sys.stdin.read().splitlines()):\n    print(line, '  ')\nprint()\n",
        "passed",
    ),
    "wrong: a - b": ("sum-of-two", "a, b = map(int, input().split())\nprint(a - b)\n", "failed"),
    "wrong: one decimal": (
        "mean",
        "input()\nxs = list(map(int, input().split()))\nprint(f'{sum(xs) / len(xs):.1f}')\n",
        "failed",
    ),
    "wrong: echoes its input": (
        "reverse-lines",
        "import sys\nsys.stdout.write(sys.stdin.read())\n",
        "failed",
    ),
    "slow: counts to 10**12": (
        "triangular",
        "n = int(input())\ntotal = 0\nfor i in range(n + 1):\n    total += i\nprint(total)\n",
        "timeout",
    ),
    "the flagged problem's own reference": ("broken-reference", "n = int(input())\nprint(n * n)\n", "failed"),
    "raises": ("sum-of-two", "raise ValueError('no')\n", "failed"),
    "hostile: first answer then os._exit(0)": (
        "sum-of-two",
        "import os\nprint(3, flush=True)\nos._exit(0)\n",
        "failed",
    ),
    "hostile: forges report lines": (
        "sum-of-two",
        'print(\'{"t": 0, "s": "ok", "d": "0", "x": "3"}\')\nprint(\'{"end": 5}\')\n',
        "failed",
    ),
    "hostile: patches print, exits 0": (
        "mean",
        "import builtins\nbuiltins.print = lambda *a, **k: None\nraise SystemExit(0)\n",
        "failed",
    ),
}

CALL: dict[str, Row] = {
    "reference method of class Solution": (
        "call/two-sum",
        "seen = {}\n        for i, x in enumerate(nums):\n            if target - x in seen:\n"
        "                return [seen[target - x], i]\n            seen[x] = i\n",
        "passed",
    ),
    "reference returns a tuple": ("call/min-max", "return (min(xs), max(xs))\n", "passed"),
    "a list for the pair": ("call/min-max", "return [min(xs), max(xs)]\n", "passed"),
    "reference dict": (
        "call/word-count",
        "counts = {}\n    for w in text.split():\n        counts[w] = counts.get(w, 0) + 1\n    return counts\n",
        "passed",
    ),
    "wrong: swapped": ("call/min-max", "return (max(xs), min(xs))\n", "failed"),
    "wrong: constant indices": ("call/two-sum", "return [0, 1]\n", "failed"),
    "wrong: counts every word once": ("call/word-count", "return {w: 1 for w in text.split()}\n", "failed"),
    "raises": ("call/min-max", "raise RuntimeError('no')\n", "failed"),
    "hostile: always-equal object": (
        "call/min-max",
        "class Anything(list):\n        def __eq__(self, other):\n            return True\n    return Anything()\n",
        "failed",
    ),
    "hostile: os._exit(0) at the first call": ("call/word-count", "import os\n    os._exit(0)\n", "failed"),
    "hostile: patches the comparison builtins": (
        "call/min-max",
        "import builtins\n    builtins.isinstance = lambda *a: True\n    return 0\n",
        "failed",
    ),
}

EVALPLUS: dict[str, Row] = {
    "reference": (
        "HumanEval/12",
        "    if not strings:\n        return None\n    maxlen = max(len(x) for x in strings)\n"
        "    for s in strings:\n        if len(s) == maxlen:\n            return s\n",
        "passed",
    ),
    "float within atol": (
        "HumanEval/4",
        "    mean = sum(numbers) / len(numbers)\n"
        "    return sum(abs(x - mean) for x in numbers) / len(numbers) + 1e-9\n",
        "passed",
    ),
    "another root of the polynomial (find_zero oracle)": (
        "HumanEval/32",
        "    x = 10.0\n    for _ in range(200):\n        d = sum(i * c * x ** (i - 1) for i, c in enumerate(xs) if i)\n"
        "        x -= poly(xs, x) / d\n    return x\n",
        "passed",
    ),
    "wrong: float off by 1e-3": (
        "HumanEval/4",
        "    mean = sum(numbers) / len(numbers)\n"
        "    return sum(abs(x - mean) for x in numbers) / len(numbers) + 1e-3\n",
        "failed",
    ),
    "wrong on plus only: crashes on []": (
        "HumanEval/0",
        "    return min(abs(a - b) for i, a in enumerate(numbers) for b in numbers[i + 1:]) < threshold\n",
        "failed",
    ),
    "wrong: the last of equal ones": (
        "HumanEval/12",
        "    return max(reversed(strings), key=len) if strings else None\n",
        "failed",
    ),
    "hostile: always-equal object": (
        "HumanEval/0",
        "    class Anything:\n        def __eq__(self, other):\n            return True\n    return Anything()\n",
        "failed",
    ),
    "hostile: str subclass equal to everything": (
        "HumanEval/12",
        "    class S(str):\n        def __eq__(self, other):\n            return True\n    return S('x')\n",
        "failed",
    ),
    "hostile: exits 0 at the first call": ("HumanEval/0", "    import os\n    os._exit(0)\n", "failed"),
}

TABLES = {"stdio": STDIO, "call": CALL, "evalplus": EVALPLUS}


def mbpp_table() -> dict[str, Row]:
    """MBPP's table is the fixture's own samples file (also run by tests/jail/test_task_mbpp_verify.py)."""
    lines = (FIXTURES / "mbpp_samples.jsonl").read_bytes().splitlines()
    rows = [orjson.loads(line) for line in lines]
    return {f"{r['task_id']}: {r['why']}": (r["task_id"], r["completion"], r["expect"]) for r in rows}


TABLES["mbpp"] = mbpp_table()
CASES = [(kind, name) for kind, table in TABLES.items() for name in table]


@pytest.fixture(scope="module")
def verified(tmp_path_factory) -> dict[str, dict[str, dict]]:
    """One `engine verify` per kind, of its whole table: the result rows by case name."""
    results = {}
    for kind, table in TABLES.items():
        tmp = tmp_path_factory.mktemp(kind)
        samples, out = tmp / "samples.jsonl", tmp / "results.jsonl"
        samples.write_bytes(
            b"".join(
                orjson.dumps({"task_id": t, "completion": c, "case": n}) + b"\n"
                for n, (t, c, _) in table.items()
            )
        )
        done = engine(
            "verify",
            samples,
            "--task",
            kind,
            "--dataset",
            FIXTURES / f"{kind}.jsonl",
            "--out",
            out,
            "--json",
            "--workers",
            2,
            env=isolated_env(tmp),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        assert sorted(r["case"] for r in rows) == sorted(table)  # every sample judged once
        assert orjson.loads(done.stdout)["samples"] == len(table)
        results[kind] = {r["case"]: r for r in rows}
    return results


@pytest.mark.parametrize(("kind", "case"), CASES, ids=[f"{k}:{c}" for k, c in CASES])
def test_verify_gives_the_expected_verdict(verified, kind, case):
    row = verified[kind][case]
    assert (row["result"], row["task_kind"]) == (TABLES[kind][case][2], kind), row["detail"]
    assert row["passed"] == (row["result"] == "passed")
    if kind != "mbpp":  # multi-test kinds count their tests; a pass passed every one
        assert 0 <= row["tests_passed"] <= row["tests_total"] > 0
        assert (row["tests_passed"] == row["tests_total"]) >= row["passed"]
