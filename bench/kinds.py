"""How fast does `engine verify --task stdio` judge stdin/stdout problems with many tests and
megabytes of input (CodeContests-sized)?

Writes a synthetic stdio dataset (each problem: sum the integers of the input; --tests tests per
problem sharing --megabytes of input) and a samples file (per problem: --samples copies of the
reference, each made unique by a trailing comment so that dedup cannot help, plus one wrong
answer), then times `engine verify` end to end as a command (interpreter start, preflight and
calibration included). Prints samples/s and tests/s per round, the per-sample wall time in the
sandbox (median and max, from the results), and the medians over the rounds. Asserts nothing
about timing; exits non-zero only on malfunction (the command failing, or a verdict other than
the expected one).

    .venv/bin/python bench/kinds.py                        # 3 rounds, 4 problems x 100 tests, 2 MB each
    .venv/bin/python bench/kinds.py --rounds 1 --problems 1 --tests 2 --megabytes 0.01 --samples 1
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE = "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n"
WRONG = "import sys\nprint(sum(map(int, sys.stdin.read().split())) + 1)\n"


def test_case(rng: random.Random, size: int) -> tuple[str, str]:
    """An input of about `size` bytes (lines of integers) and its answer."""
    numbers = [rng.randint(-(10**9), 10**9) for _ in range(max(1, size // 11))]
    lines = [" ".join(map(str, numbers[i : i + 20])) for i in range(0, len(numbers), 20)]
    return "\n".join(lines) + "\n", f"{sum(numbers)}\n"


def build_files(directory: Path, args: argparse.Namespace) -> tuple[Path, Path, int]:
    rng = random.Random(0)
    size = int(args.megabytes * 1_000_000 / args.tests)
    rows, samples = [], []
    for p in range(args.problems):
        tests = [test_case(rng, size) for _ in range(args.tests)]
        rows.append(
            {
                "name": f"sum-{p}",
                "description": "Print the sum of the integers of the input.",
                "public_tests": {"input": [i for i, _ in tests], "output": [o for _, o in tests]},
                "solutions": {"language": [3], "solution": [REFERENCE]},
                "time_limit": {"seconds": 2, "nanos": 0},
            }
        )
        for copy in range(args.samples):
            samples.append(
                {"task_id": f"sum-{p}", "completion": REFERENCE + f"# copy {copy}\n", "expect": "passed"}
            )
        samples.append({"task_id": f"sum-{p}", "completion": WRONG, "expect": "failed"})
    dataset, samples_file = directory / "stdio.jsonl", directory / "samples.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples_file.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return dataset, samples_file, len(samples)


def one_round(dataset: Path, samples: Path, out: Path, workers: int) -> tuple[float, list[dict]]:
    command = [sys.executable, "-m", "engine", "verify", str(samples), "--task", "stdio"]
    command += ["--dataset", str(dataset), "--out", str(out), "--json", "--workers", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"engine verify exited {done.returncode}: {done.stderr[-2000:]}")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    wrong = [r for r in rows if r["result"] != r["expect"]]
    if wrong:
        sys.exit(f"{len(wrong)} unexpected verdicts, first: {wrong[0]['result']} ({wrong[0]['detail']})")
    return elapsed, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--tests", type=int, default=100, help="tests per problem")
    parser.add_argument("--megabytes", type=float, default=2.0, help="input per problem, all tests together")
    parser.add_argument(
        "--samples", type=int, default=4, help="reference copies per problem (plus one wrong)"
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset, samples, count = build_files(Path(tmp), args)
        tests = count * args.tests
        print(
            f"stdio: {args.problems} problems x {args.tests} tests, {args.megabytes:g} MB of input each,"
            f" {count} samples ({tests} tests to run at most), {args.workers} workers"
        )
        rates = []
        for round_ in range(args.rounds):
            elapsed, rows = one_round(dataset, samples, Path(tmp) / "results.jsonl", args.workers)
            walls = [r["wall_s"] for r in rows if r.get("wall_s") is not None]
            rates.append(count / elapsed)
            print(
                f"round {round_ + 1}: {count / elapsed:.2f} samples/s, {tests / elapsed:.0f} tests/s end to end"
                f" ({elapsed:.1f} s); per-sample wall in the sandbox: median {statistics.median(walls):.3f} s,"
                f" max {max(walls):.3f} s"
            )
        print(f"medians over {args.rounds} rounds: {statistics.median(rates):.2f} samples/s")


if __name__ == "__main__":
    main()
