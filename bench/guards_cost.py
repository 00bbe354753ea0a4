"""What do the guards cost? `engine verify` on bench/verify.py's file (a) (164 canonical solutions
x 10, all unique), alternating with and without `--no-guards`, N rounds each. Prints, per setting,
samples/s end to end (median) and the CPU time the programs used (sum of `cpu_s`: the child
processes in the jails, where the guards run; unlike the wall clock, it does not depend on how
loaded the machine is). Asserts nothing.

    .venv/bin/python bench/guards_cost.py [--rounds 3]
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

sys.path.insert(0, str(Path(__file__).parent))
from verify import build_files  # noqa: E402


def run(path: Path, extra: list[str]) -> tuple[float, float]:
    out = path.with_name("out.jsonl")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "engine", "verify", str(path), "--out", str(out), "--json", *extra],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - started
    cpu = sum(json.loads(line)["cpu_s"] for line in out.read_text().splitlines())
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--problems", type=int, help="only the first P problems (default: all 164)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-guards-") as tmp:
        path = build_files(Path(tmp), args.problems)["a"]
        rows = len(path.read_text().splitlines())
        figures: dict[str, list[tuple[float, float]]] = {"guards": [], "--no-guards": []}
        for round_ in range(args.rounds):
            for label in ["guards", "--no-guards"] if round_ % 2 == 0 else ["--no-guards", "guards"]:
                elapsed, cpu = run(path, [] if label == "guards" else ["--no-guards"])
                figures[label].append((elapsed, cpu))
                print(
                    f"round {round_ + 1} {label:11s}: {rows / elapsed:6.1f} samples/s, programs' CPU {cpu:6.2f} s"
                    f" ({cpu / rows * 1000:.2f} ms per sample)",
                    flush=True,
                )
        print(f"\nmedians over {args.rounds} rounds, {rows} samples:")
        for label, runs in figures.items():
            rate = statistics.median(rows / e for e, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(
                f"  {label:11s}: {rate:6.1f} samples/s, {cpu / rows * 1000:.2f} ms of program CPU per sample"
            )


if __name__ == "__main__":
    main()
