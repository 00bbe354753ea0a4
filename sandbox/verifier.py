"""Verifying samples of known problems: dedup, calibrated per-problem limits, preflight.

    verifier = Verifier(pool, problems, programs=task, dedup=True, timing=Timing())
    await verifier.preflight()            # SandboxError (one line) if execution is misconfigured
    outcome = await verifier.verify(problem, completion)

- Dedup: identical (problem, completion) pairs are run once; the others get that verdict with
  `reused=True` (no CPU used). Samples in flight at the same time are coalesced too. `seed()`
  loads verdicts from a store on resume. Only final verdicts are reused (`Outcome.final`).
- Infrastructure errors (a sandbox fault: a worker died, a jail failed to start) are retried, up
  to INFRA_ATTEMPTS runs in all; if they persist the outcome is `infra_error`, never reused.
- Loops last (`Timing.short_cpu_s` > 0; off by default): each unique sample of a calibrated
  problem runs first under a short CPU-time limit (`Timing.short_cpu_limit`: e.g. 0.05 s, or 10x
  its reference's CPU time if more), when that is below its full one. A sample that finishes
  within it has the verdict it would have under the full limits (it never needed more), and the
  outcome says the full limits; one that meets it (nearly always a loop) runs again under the
  full limits once no other program waits, on a jail of its own (ForkServerBackend `last`), and
  its caller is told (`deferred`) so that it can take another sample meanwhile. The samples
  that take milliseconds then do not queue behind loops that take a second each; the cost is
  the short run again for each sample that meets it, and the loops' verdicts come later.
- Load-sensitive timeouts (a wall-clock timeout whose CPU stayed under its limit: see
  sandbox/verdicts.py) are run once more on the pool's reserved worker, whose CPU weight gets it
  a core on a loaded machine; that second run's verdict is final. Busy loops meet their CPU limit
  and are final at once, so confirmations cost only samples that sleep or block.
- Programs: the task kind (engine.tasks.Task, through the `Programs` protocol below) builds each
  sample's program and gives each problem's reference solution and known-bad completions; the
  sandbox knows no benchmark.
- Calibration: each problem's wall-clock limit is max(floor, factor x the median time of its
  reference solution), capped by the ceiling, measured at preflight (every problem that has
  one, in parallel; `runs` times where the first measurement could lift the limit off the floor).
  A fixed `timeout_s` overrides it; problems without a
  reference solution get `default_s`.
- Preflight: the reference solutions of a sample of problems must pass, and the task's known-bad
  completions (e.g. one that raises, one that exits 0 early) must fail; otherwise the command refuses
  to start and says why. Harnesses that skip this silently report 0 % or 100 % when execution is
  misconfigured.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sandbox.calibration import CalibrationCache, Timing
from sandbox.limits import Limits
from sandbox.pool import SandboxPool
from sandbox.preflight import Preflight
from sandbox.verdicts import Outcome, Verdict

log = logging.getLogger(__name__)
Key = tuple[str, bytes]  # (task_id, digest of the completion): identical samples share one
Done = Callable[[Outcome | BaseException], object]

CACHE_OUTPUT_CHARS = 2048
INFRA_ATTEMPTS = 3  # runs of a sample whose sandbox keeps failing, before it is stored as infra_error
INFRA_RETRY_DELAY_S = 0.25  # times the attempt number: a replacement worker starts meanwhile


class Problem(Protocol):
    """What the verifier reads of a problem itself (engine.records.Problem has it): the sandbox
    does not import the engine. The rest it leaves to `Programs`."""

    @property
    def task_id(self) -> str: ...


class Programs(Protocol):
    """How a problem's samples become programs (engine.tasks.Task has it)."""

    def program(self, problem: Any, completion: str, *, guards: bool) -> str: ...
    def reference(self, problem: Any) -> str | None: ...
    def known_bad(self, problem: Any, *, guards: bool) -> Mapping[str, str]: ...


class Verifier:
    def __init__(
        self,
        pool: SandboxPool,
        problems: Iterable[Problem],
        *,
        programs: Programs,
        dedup: bool = True,
        timing: Timing = Timing(),
        preflight_sample: int = 8,
        cache_size: int = 500_000,
        retry_delay_s: float = INFRA_RETRY_DELAY_S,
        calibration_cache: CalibrationCache | None = None,
    ):
        self.pool = pool
        self.problems = {p.task_id: p for p in problems}
        self.programs = programs
        self.dedup = dedup
        self.timing = timing
        self.preflight_sample = preflight_sample
        self.cache_size = cache_size
        self.retry_delay_s = retry_delay_s
        self.calibration_cache = calibration_cache  # None: measured at every start-up
        self.reused = 0  # verdicts reused instead of run
        self.confirmed = 0  # load-sensitive timeouts run again on the reserved worker
        self.rerun = 0  # samples that met their short CPU-time limit, run again under the full one
        self.measured: dict[str, float] = {}  # task_id -> canonical solution's median wall time
        self.flagged: dict[str, str] = {}  # task_id -> why its reference failed preflight (tolerated kinds)
        self._limits: dict[str, Limits] = {}
        self._short: dict[str, Limits] = {}  # task_id -> its limits with the short CPU-time limit
        self._lasts = bool(getattr(pool, "takes_last", False))  # the pool runs deferred ones last
        self._cache: OrderedDict[tuple[str, bytes], Outcome] = OrderedDict()
        self._inflight: dict[Key, _Run] = {}

    @property
    def defers(self) -> bool:
        """Whether a sample may be deferred behind the others (loops last: module doc)."""
        return self._lasts and bool(self._short)

    # -- limits ------------------------------------------------------------------------------

    def limits_for(self, task_id: str) -> Limits:
        if task_id in self._limits:
            return self._limits[task_id]
        wall, cpu = self.timing.fixed_limits(self.timing.timeout_s or self.timing.default_s)
        return replace(self.base_limits, timeout_s=wall, cpu_time_s=cpu)

    @property
    def base_limits(self) -> Limits:
        """The pool's limits, with room for a report as long as the kind says its programs write
        (kinds that compare outputs: `report_bytes`)."""
        report = getattr(self.programs, "report_bytes", 0)
        return replace(self.pool.limits, max_output_bytes=max(self.pool.limits.max_output_bytes, report))

    # -- preflight and calibration -----------------------------------------------------------

    async def preflight(self) -> None:
        """Prove the sandbox judges correctly (and calibrate); SandboxError saying why if not
        (sandbox/preflight.py)."""
        await Preflight(self).run()

    async def _checked(self, problem: Problem, outcome: Outcome, limits: Limits) -> Outcome:
        """The outcome as the task judges it, through its optional async `check` hook first (a
        checker program: a second sandbox run, infrastructure faults retried like the first)."""
        check = getattr(self.programs, "check", None)
        if check is not None:

            async def run(program: str, wall_s: float) -> Outcome:
                check_limits = replace(limits, timeout_s=wall_s, cpu_time_s=wall_s)
                return await self._attempts(program, check_limits, f"check:{problem.task_id}", reserved=False)

            if (j := await check(problem, outcome, run)) is not None:
                return _with_judgement(outcome, j)
        return self._judged(problem, outcome)

    def _judged(self, problem: Problem, outcome: Outcome) -> Outcome:
        """The outcome as the task judges it: kinds that compare outputs decide only there (the
        sandbox's `passed` says their driver ran to its end)."""
        judge = getattr(self.programs, "judge", None)
        if judge is None:
            return outcome
        return _with_judgement(outcome, judge(problem, outcome))

    # -- verification ------------------------------------------------------------------------

    def seed(self, task_id: str, completion: str, outcome: Outcome) -> None:
        """A verdict already known (e.g. from the store on resume) for later identical samples;
        never one obtained with guards on when they are off now, or the other way round."""
        if self.dedup and _reusable(outcome) and outcome.limits.guards == self.pool.limits.guards:
            self._remember(_key(task_id, completion), outcome)

    def known(self, task_id: str, completion: str) -> Outcome | None:
        """The verdict of an identical sample already verified, at once (no sandbox, no waiting
        in the queue behind samples that need one); None if there is none."""
        return self._cached(_key(task_id, completion)) if self.dedup else None

    def _cached(self, key: tuple[str, bytes]) -> Outcome | None:
        if (cached := self._cache.get(key)) is None:
            return None
        self._cache.move_to_end(key)
        self.reused += 1
        return _reuse(cached)

    async def verify(self, problem: Problem, completion: str) -> Outcome:
        """`submit` awaited: the outcome, or the exception that stopped its verification."""
        outcome = await self.verify_or_defer(problem, completion)
        return await outcome if isinstance(outcome, asyncio.Future) else outcome  # cancelling withdraws

    async def verify_or_defer(self, problem: Problem, completion: str) -> Outcome | asyncio.Future[Outcome]:
        """`verify`, except that a sample deferred behind the others (it met its short CPU-time
        limit: module doc) returns at once a future of its verdict, so that the caller can take
        the next sample meanwhile. Cancelling that future withdraws the sample."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Outcome] = loop.create_future()
        moved: asyncio.Future[None] = loop.create_future()  # a verdict, or a deferral

        def done(result: Outcome | BaseException) -> None:
            if not answer.done():
                if isinstance(result, BaseException):
                    answer.set_exception(result)
                else:
                    answer.set_result(result)
            if not moved.done():
                moved.set_result(None)

        def deferred() -> None:
            if not moved.done():
                moved.set_result(None)

        withdraw = self.submit(problem, completion, done, deferred=deferred)
        try:
            await moved
        except asyncio.CancelledError:
            withdraw()
            raise
        if answer.done():
            return answer.result()
        answer.add_done_callback(lambda future: withdraw() if future.cancelled() else None)
        return answer

    def submit(
        self, problem: Problem, completion: str, done: Done, deferred: Callable[[], object] | None = None
    ) -> Callable[[], None]:
        """Verify a sample without a task of its own: `done(outcome)` is called once (or with the
        exception that stopped it), never from inside this call. Returns `withdraw()`: this
        caller no longer waits; the run is stopped when nobody else waits for it either.
        `deferred()` is called, at most once and before `done`, if the sample is deferred behind
        the others (module doc): its verdict comes later, and the caller may take another."""
        key = _key(problem.task_id, completion) if self.dedup else None
        if key is not None:
            if (cached := self._cached(key)) is not None:
                asyncio.get_running_loop().call_soon(done, cached)
                return _nothing
            if (run := self._inflight.get(key)) is not None:  # an identical sample: its verdict
                run.waiters.append(done)
                if deferred is not None and (run.short or run.later):  # else it cannot be deferred
                    if run.later:
                        asyncio.get_running_loop().call_soon(deferred)
                    else:
                        run.deferred = run.deferred or {}
                        run.deferred[done] = deferred
                return functools.partial(self._withdraw, run, done)
        return self._start(problem, completion, key, done, deferred)

    def _start(
        self,
        problem: Problem,
        completion: str,
        key: Key | None,
        done: Done,
        deferred: Callable[[], object] | None = None,
    ) -> Callable[[], None]:
        limits = self.limits_for(problem.task_id)
        program, data = self._program(problem, completion, limits.guards)
        short = self._short.get(problem.task_id) if self._lasts else None
        run = _Run(problem, completion, key, [done], limits, program, data, short=short is not None)
        if deferred is not None and run.short:
            run.deferred = {done: deferred}
        if key is not None:
            self._inflight[key] = run
        run.stop = self.pool.submit(
            program,
            limits=short or limits,
            label=problem.task_id,
            data=data,
            done=functools.partial(self._first, run),
        )
        return functools.partial(self._withdraw, run, done)

    def _first(self, run: _Run, result: Outcome | BaseException) -> None:
        """The first run's outcome. Judged here when final; a sandbox fault (retried), a timeout
        the load may have caused (confirmed) or a kind with a checker program go on in a task."""
        if isinstance(result, BaseException):
            self._end(run, result)
            return
        if run.short:
            run.short = False
            if result.verdict is Verdict.timeout and not result.load_sensitive:  # met the short limit
                self._in_task(run, self._full_run(run))
                run.later = True
                callbacks, run.deferred = list((run.deferred or {}).values()), None
                for callback in callbacks:
                    _answer(callback)
                return
            result = replace(result, limits=run.limits)  # finished within it: the full limits' verdict
        if result.verdict is Verdict.infra_error or result.load_sensitive or hasattr(self.programs, "check"):
            self._in_task(run, self._after_first(run, result))
        else:
            try:
                judged: Outcome | BaseException = self._judged(run.problem, result)
            except Exception as exc:  # a task kind's fault: the caller hears of it
                judged = exc
            self._end(run, judged)

    def _in_task(self, run: _Run, job: Coroutine[Any, Any, Outcome]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        run.stop = task.cancel
        task.add_done_callback(functools.partial(self._task_ended, run))

    async def _full_run(self, run: _Run) -> Outcome:
        """A sample that met its short CPU-time limit, run under its full limits once no other
        program waits; then as any first run (retried, confirmed, checked)."""
        self.rerun += 1
        answer: asyncio.Future[Outcome | BaseException] = asyncio.get_running_loop().create_future()

        def done(result: Outcome | BaseException) -> None:
            if not answer.done():
                answer.set_result(result)

        stop = self.pool.submit(
            run.program, limits=run.limits, label=run.problem.task_id, data=run.data, done=done, last=True
        )
        try:
            result = await answer
        except asyncio.CancelledError:
            stop()
            raise
        if isinstance(result, BaseException):
            raise result
        return await self._after_first(run, result)

    def _task_ended(self, run: _Run, task: asyncio.Task[Outcome]) -> None:
        if task.cancelled():
            self._end(run, asyncio.CancelledError())
        else:
            self._end(run, task.exception() or task.result())

    def _end(self, run: _Run, result: Outcome | BaseException) -> None:
        """Answer everyone waiting: the first caller gets the result; identical samples get its
        verdict if it is final, or else each is verified on its own (not shared: a sandbox fault
        or a load-sensitive verdict says nothing about the twin)."""
        if run.key is not None and self._inflight.get(run.key) is run:
            del self._inflight[run.key]
        shared = result if isinstance(result, Outcome) and _reusable(result) else None
        if shared is not None and run.key is not None:
            self._remember(run.key, shared)
        if not run.waiters:
            return
        first, *twins = run.waiters
        run.waiters = []
        _answer(first, result)
        told = run.later  # the twins' callers know of the deferral already: never told twice
        for twin in twins:
            if shared is not None:
                self.reused += 1
                _answer(twin, _reuse(shared))
            else:
                deferred = None if told or run.deferred is None else run.deferred.get(twin)
                self._start(run.problem, run.completion, None, twin, deferred)

    def _withdraw(self, run: _Run, done: Done) -> None:
        """A caller stops waiting (cancelled); the run stops too when it was the last one."""
        if run.deferred is not None:
            run.deferred.pop(done, None)
        if done in run.waiters:
            run.waiters.remove(done)
            if not run.waiters and run.stop is not None:
                if run.key is not None and self._inflight.get(run.key) is run:
                    del self._inflight[run.key]  # a later identical sample starts afresh
                run.stop()

    async def _after_first(self, run: _Run, first: Outcome) -> Outcome:
        """A final outcome (or infra_error): retried through sandbox faults, and confirmed on the
        reserved worker when the machine's load could have caused it."""
        problem, program, limits, data = run.problem, run.program, run.limits, run.data
        outcome = await self._attempts(
            program, limits, problem.task_id, reserved=False, data=data, first=first
        )
        if not outcome.load_sensitive:
            return await self._checked(problem, outcome, limits)
        self.confirmed += 1
        confirmed = await self._attempts(
            program, limits, f"confirm:{problem.task_id}", reserved=True, data=data
        )
        log.debug(
            "%s: %s confirmed as %s (%s)",
            problem.task_id,
            outcome.detail,
            confirmed.verdict.value,
            confirmed.detail,
        )
        if confirmed.verdict is Verdict.timeout:
            confirmed = replace(confirmed, detail=confirmed.detail + " (confirmed on the reserved sandbox)")
        return await self._checked(problem, replace(confirmed, load_sensitive=False), limits)

    def _program(self, problem: Problem, completion: str, guards: bool) -> tuple[str, bytes | None]:
        """The sample's program, and its problem's data when the task has some (sent to each jail
        once) and the pool takes it."""
        data_of = getattr(self.programs, "data", None)  # optional (engine/tasks/base.py)
        with_data = getattr(self.programs, "program_with_data", None)
        data = data_of(problem) if data_of and with_data and getattr(self.pool, "takes_data", False) else None
        if data is None or with_data is None:
            return self.programs.program(problem, completion, guards=guards), None
        return with_data(problem, completion, guards=guards), data

    async def _attempts(
        self,
        program: str,
        limits: Limits,
        label: str,
        *,
        reserved: bool,
        data: bytes | None = None,
        first: Outcome | None = None,
    ) -> Outcome:
        """Run until the outcome is not a sandbox fault, INFRA_ATTEMPTS runs at most (`first`:
        the first run's outcome, when it has run already)."""
        for attempt in range(1, INFRA_ATTEMPTS + 1):
            extra = {"data": data} if data is not None else {}  # pools without data take no keyword
            if attempt == 1 and first is not None:
                outcome = first
            else:
                outcome = await self.pool.run(program, limits=limits, label=label, reserved=reserved, **extra)
            if outcome.verdict is not Verdict.infra_error or attempt == INFRA_ATTEMPTS or self.pool.closed:
                return outcome
            log.warning("%s: %s; retrying (%d of %d)", label, outcome.detail, attempt + 1, INFRA_ATTEMPTS)
            await asyncio.sleep(self.retry_delay_s * attempt)
        raise AssertionError("unreachable")

    def _remember(self, key: tuple[str, bytes], outcome: Outcome) -> None:
        long = len(outcome.output) > CACHE_OUTPUT_CHARS
        self._cache[key] = replace(outcome, output=outcome.output[-CACHE_OUTPUT_CHARS:]) if long else outcome
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


def _with_judgement(outcome: Outcome, j: Any) -> Outcome:
    """The outcome carrying a task's judgement (engine.tasks.Judgement)."""
    judged = (j.verdict, j.detail, j.tests_passed, j.tests_total, j.base_passed)
    if judged == (
        outcome.verdict,
        outcome.detail,
        outcome.tests_passed,
        outcome.tests_total,
        outcome.base_passed,
    ):
        return outcome  # judged as the sandbox saw it (most kinds, most samples): nothing to copy
    output = outcome.output if j.tests_total is None else outcome.output[-CACHE_OUTPUT_CHARS:]
    return replace(
        outcome,
        output=output,  # judged: a long report need not be kept
        verdict=j.verdict,
        detail=j.detail,
        tests_passed=j.tests_passed,
        tests_total=j.tests_total,
        base_passed=j.base_passed,
    )


@dataclass(slots=True, eq=False)
class _Run:
    """One sample being verified, and everyone waiting for its verdict (identical samples too)."""

    problem: Any
    completion: str
    key: Key | None  # None: not shared (dedup off, or a twin verified on its own)
    waiters: list[Done]
    limits: Limits
    program: str
    data: bytes | None
    short: bool = False  # its first run is under the short CPU-time limit (module doc)
    later: bool = False  # it met that limit: deferred behind the others, its callers told
    deferred: dict[Done, Callable[[], object]] | None = None  # whom to tell (None: nobody)
    stop: Callable[[], object] | None = None  # withdraws what runs now: a pool ticket, or a task


def _answer(done: Callable[..., object], *result: Outcome | BaseException) -> None:
    try:
        done(*result)
    except Exception:  # the caller's fault: logged, and the others are still answered
        log.exception("a verdict's receiver failed")


def _nothing() -> None:
    pass


def _key(task_id: str, completion: str) -> tuple[str, bytes]:
    return task_id, hashlib.blake2b(completion.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _reusable(outcome: Outcome) -> bool:
    return outcome.final


def _reuse(outcome: Outcome) -> Outcome:
    return replace(outcome, reused=True, wall_s=0.0, cpu_s=0.0)
