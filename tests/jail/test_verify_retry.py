"""`engine verify --retry timeout` and `--sandbox none` through the real command, in real jails.
The verifier's units (dedup, calibration, preflight) are in tests/unit/sandbox/test_verifier.py."""

from __future__ import annotations

import subprocess
import sys

import orjson

from engine.records import Sample
from engine.store import Store, StoredVerdict
from engine.tasks import load_problems


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", "verify", *args], capture_output=True, text=True, timeout=timeout
    )


def test_retry_timeout_reruns_only_the_timeouts_of_a_results_file(tmp_path) -> None:
    [problem] = load_problems(limit=1)
    lines = [
        {"task_id": problem.task_id, "completion": problem.payload["canonical_solution"]},
        {
            "task_id": problem.task_id,
            "completion": problem.payload["canonical_solution"] + "import time\ntime.sleep(1.5)\n",
        },
        {"task_id": problem.task_id, "completion": "    return None\n"},
    ]
    samples = tmp_path / "samples.jsonl"
    samples.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    first = _cli(str(samples), "--json", "--timeout", "1", "--workers", "2")
    assert first.returncode == 0, first.stderr
    results_path = tmp_path / "samples.jsonl_results.jsonl"
    results = [orjson.loads(x) for x in results_path.read_bytes().splitlines()]
    assert [r["result"] for r in results] == ["passed", "timeout", "failed"]
    assert all(r["limits"]["timeout_s"] == 1.0 and r["backend"] == "nsjail" for r in results)
    results[2]["marker"] = "kept as it was"
    results_path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in results))

    again = _cli(str(results_path), "--retry", "timeout", "--json", "--timeout", "5", "--workers", "2")
    assert again.returncode == 0, again.stderr
    summary = orjson.loads(again.stdout)
    assert summary["rerun"] == 1 and summary["verdicts"]["passed"] == 2
    rewritten = [orjson.loads(x) for x in results_path.read_bytes().splitlines()]
    assert [r["result"] for r in rewritten] == ["passed", "passed", "failed"]
    assert rewritten[1]["limits"]["timeout_s"] == 5.0 and rewritten[0]["limits"]["timeout_s"] == 1.0
    assert rewritten[2]["marker"] == "kept as it was"

    plain = _cli(str(samples), "--retry", "timeout")
    assert plain.returncode == 2 and "needs a results file" in plain.stderr


def test_retry_timeout_of_a_run_directory_updates_only_its_timeouts(tmp_path) -> None:
    [problem] = load_problems(limit=1)
    store = Store.open(tmp_path)
    store.save_problems([problem])
    slow = problem.payload["canonical_solution"] + "import time\ntime.sleep(1.5)\n"
    for index, (completion, verdict) in enumerate(
        [
            (problem.payload["canonical_solution"], "passed"),
            (slow, "timeout"),
            ("    return None\n", "failed"),
        ]
    ):
        store.stage_sample(Sample(problem.task_id, index, completion, 5, "stop", "http://s:1", 1.0, 1.1, 1.2))
        store.stage_verdict(
            StoredVerdict(problem.task_id, index, verdict, "as stored", "", 1.0, "nsjail", {"timeout_s": 1.0})
        )
    store.flush()
    store.close()

    result = _cli(str(tmp_path), "--retry", "timeout", "--json", "--timeout", "5", "--workers", "2")
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(result.stdout)
    assert summary["rerun"] == 1
    assert summary["verdicts"] == {"passed": 2, "failed": 1, "timeout": 0, "oom": 0, "error": 0}
    rows = {row["sample_index"]: row for row in Store.open(tmp_path, create=False).rows()}
    assert rows[1]["verdict"] == "passed" and rows[1]["detail"] != "as stored"
    assert orjson.loads(rows[1]["limits"])["timeout_s"] == 5.0
    assert [rows[i]["detail"] for i in (0, 2)] == ["as stored", "as stored"]  # the others untouched

    assert _cli(str(tmp_path), "--json").returncode == 2  # a run directory needs --retry


def test_sandbox_none_warns_loudly(tmp_path) -> None:
    [problem] = load_problems(limit=1)
    samples = tmp_path / "s.jsonl"
    samples.write_bytes(
        orjson.dumps({"task_id": problem.task_id, "completion": problem.payload["canonical_solution"]})
        + b"\n"
    )
    result = _cli(str(samples), "--sandbox", "none", "--json", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "WARNING: --sandbox none" in result.stderr and "UNSANDBOXED" in result.stderr
    assert orjson.loads(result.stdout)["verdicts"]["passed"] == 1
