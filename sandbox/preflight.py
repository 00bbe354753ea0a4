"""The verifier's preflight and calibration (sandbox/verifier.py's docstring says what they
promise): the reference solutions of a sample of problems must pass and the task's known-bad
completions must fail, else a SandboxError says why; meanwhile each problem's limits are
calibrated from its reference's median times (or read from the calibration cache).

A Preflight works on its Verifier's parts: it reads its pool, problems, programs and timing, and
fills its per-problem limits, `measured` and `flagged`.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.calibration import Calibration, Timing, calibration_key
from sandbox.errors import SandboxError
from sandbox.limits import Limits
from sandbox.verdicts import Outcome, Verdict

if TYPE_CHECKING:  # the Verifier creates its Preflight: no import cycle at run time
    from sandbox.verifier import Problem, Verifier

log = logging.getLogger("sandbox.verifier")  # as before the move: the same logger name in logs


class Preflight:
    def __init__(self, verifier: Verifier):
        self.verifier = verifier

    async def run(self) -> None:
        """Prove the sandbox judges correctly (and calibrate); SandboxError saying why if not."""
        with_canonical = [p for p in self.verifier.problems.values() if self.verifier.programs.reference(p)]
        sample = _spread(with_canonical, self.verifier.preflight_sample)
        if self.verifier.timing.timeout_s is not None:
            await self._with_fixed_limits(sample)
        else:
            key = self._calibration_key(with_canonical)
            if (cached := self._cached(key)) is None:
                await self._calibrate(with_canonical, sample, key)
            else:
                await self._with_cached_calibration(sample, *cached)
        passing = sum(p.task_id not in self.verifier.flagged for p in sample)
        log.info("preflight passed: %d canonical solutions pass, known-bad completions fail", passing)

    async def _calibrate(self, with_canonical: list[Problem], sample: list[Problem], key: str) -> None:
        """Every canonical solution measured (and kept in the cache); the known-bad controls run
        after, under the limits just measured."""
        calibration = await self._measure_calibration(with_canonical, sample)
        if self.verifier.calibration_cache is not None:
            self.verifier.calibration_cache.store(key, calibration)
        self._apply(calibration)
        self._warn_flagged()
        self._refuse_known_bad(await self._run_known_bad())

    async def _with_cached_calibration(
        self, sample: list[Problem], where: Path, calibration: Calibration
    ) -> None:
        """Every limit is known before anything runs: the sample's canonical solutions (proving
        this sandbox still passes them) and the known-bad controls run at once."""
        self._set_limits(calibration)
        failed, bad = await self._references_and_known_bad(sample, self._probe_limits())
        self._refuse_failed(sample, failed)
        self._flag(calibration)
        log.info("calibration reused from %s", where)
        self._log_limits()
        self._warn_flagged()
        self._refuse_known_bad(bad)

    async def _with_fixed_limits(self, sample: list[Problem]) -> None:
        fixed = self.verifier.limits_for("").timeout_s
        probe = replace(self.verifier.base_limits, timeout_s=fixed, cpu_time_s=fixed)
        failed, bad = await self._references_and_known_bad(sample, probe)
        self._refuse_failed(sample, failed)
        self._warn_flagged()
        self._refuse_known_bad(bad)

    async def _references_and_known_bad(
        self, sample: list[Problem], probe: Limits
    ) -> tuple[dict[str, Outcome], list[tuple[Problem, str, Outcome]]]:
        """Both at once; checked after, references first, so a failure says what it said when
        they ran one after the other."""
        (_, failed), bad = await asyncio.gather(
            self._measure([(p, 0) for p in sample], probe), self._run_known_bad()
        )
        return failed, bad

    def _warn_flagged(self) -> None:
        flagged = self.verifier.flagged  # measured now or named by a cached calibration: warned alike
        if flagged:
            log.warning(
                "preflight: canonical solutions of %d problems did not pass (%s): flagged; they keep the default limit",
                len(flagged),
                ", ".join(sorted(flagged)[:5]),
            )

    def _calibration_key(self, with_canonical: list[Problem]) -> str:
        guards = self.verifier.base_limits.guards
        references = [
            (
                p.task_id,
                self.verifier.programs.program(p, self.verifier.programs.reference(p) or "", guards=guards),
            )
            for p in with_canonical
        ]
        return calibration_key(references, self._calibration_settings())

    def _cached(self, key: str) -> tuple[Path, Calibration] | None:
        """(its file, the calibration) of this dataset with these settings on this machine, if one
        was kept and reusing it is allowed: then only the preflight sample's canonical solutions run."""
        cache = self.verifier.calibration_cache
        if cache is None or not self.verifier.timing.reuse_calibration:
            return None
        calibration = cache.load(key)
        return None if calibration is None else (cache.path(key), calibration)

    def _calibration_settings(self) -> dict:
        timing = {
            f: getattr(self.verifier.timing, f)
            for f in Timing.__dataclass_fields__
            if f not in ("reuse_calibration", "short_cpu_s")  # neither changes what is measured
        }
        return {
            "backend": self.verifier.pool.backend.name,
            "limits": self.verifier.base_limits.to_dict(),
            "timing": timing,
        }

    def _probe_limits(self) -> Limits:
        ceiling = self.verifier.timing.ceiling_s
        return replace(self.verifier.base_limits, timeout_s=ceiling, cpu_time_s=ceiling)

    async def _measure_calibration(self, with_canonical: list[Problem], sample: list[Problem]) -> Calibration:
        probe = self._probe_limits()
        jobs = [(p, 0) for p in with_canonical]
        times, failed = await self._measure(jobs, probe)
        if self.verifier.timing.runs > 1:
            # More runs only where the measurement could move the limit off the floor.
            close = [
                p
                for p in with_canonical
                if p.task_id in times
                and self.verifier.timing.limit(times[p.task_id][0][0] * 2) > self.verifier.timing.floor_s
            ]
            more_times, more_failed = await self._measure(
                [(p, run) for p in close for run in range(1, self.verifier.timing.runs)], probe
            )
            for task_id, runs in more_times.items():
                times[task_id] += runs
            for task_id, outcome in more_failed.items():
                failed.setdefault(task_id, outcome)
        self._refuse_failed(sample, failed)
        measured = {
            task_id: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
            for task_id, runs in times.items()
            if task_id not in failed
        }
        return Calibration(measured, tuple(sorted(failed)))

    async def _measure(
        self, jobs: list[tuple[Problem, int]], limits: Limits
    ) -> tuple[dict[str, list[tuple[float, float]]], dict[str, Outcome]]:
        """Run canonical solutions: (wall, CPU) times of those that passed, outcomes of the others."""
        times: dict[str, list[tuple[float, float]]] = {}
        failed: dict[str, Outcome] = {}
        for (problem, _), outcome in zip(jobs, await self._run_canonical(jobs, limits)):
            if outcome.passed:
                times.setdefault(problem.task_id, []).append((outcome.wall_s, outcome.cpu_s))
            else:
                failed.setdefault(problem.task_id, outcome)
        return times, failed

    def _refuse_failed(self, sample: list[Problem], failed: dict[str, Outcome]) -> None:
        # Datasets whose references are known to fail some of their own tests (CodeContests) flag
        # those problems instead; a wrong (not crashed) verdict, and one passing, still prove execution.
        tolerant = getattr(self.verifier.programs, "references_may_fail", False) and any(
            p.task_id not in failed for p in sample
        )
        for problem in sample:
            if problem.task_id in failed and not (
                tolerant and failed[problem.task_id].verdict is Verdict.failed
            ):
                o = failed[problem.task_id]
                raise SandboxError(
                    f"preflight: the canonical solution of {problem.task_id} did not pass in the {self.verifier.pool.backend.name}"
                    f" sandbox ({o.verdict.value}: {o.detail}); execution is misconfigured, refusing to start"
                )
        self.verifier.flagged.update(
            {task_id: f"{o.verdict.value}: {o.detail}" for task_id, o in sorted(failed.items())}
        )

    def _apply(self, calibration: Calibration) -> None:
        self._flag(calibration)
        self._set_limits(calibration)
        self._log_limits()

    def _flag(self, calibration: Calibration) -> None:
        """After the failures measured now (their reasons kept, first in `flagged`)."""
        for task_id in calibration.failed:  # from a cached calibration: named, the reason not kept
            self.verifier.flagged.setdefault(task_id, "its reference failed when this dataset was calibrated")

    def _set_limits(self, calibration: Calibration) -> None:
        """Each measured problem's limits from its canonical solution's median times."""
        for task_id, (wall, cpu) in calibration.measured.items():
            if task_id not in self.verifier.problems:
                continue
            self.verifier.measured[task_id] = wall
            wall_limit = self.verifier.timing.limit(wall)
            cpu_limit = self.verifier.timing.cpu_limit(cpu, wall_limit)
            limits = replace(self.verifier.base_limits, timeout_s=wall_limit, cpu_time_s=cpu_limit)
            self.verifier._limits[task_id] = limits
            short = self.verifier.timing.short_cpu_limit(cpu)
            if 0 < self.verifier.timing.short_cpu_s and short < cpu_limit:
                self.verifier._short[task_id] = replace(limits, cpu_time_s=short)

    def _log_limits(self) -> None:
        if self.verifier._limits:
            walls = sorted(lim.timeout_s for lim in self.verifier._limits.values())
            cpus = sorted(lim.cpu_time_s or 0.0 for lim in self.verifier._limits.values())  # all set here
            log.info(
                "calibrated limits for %d problems: wall clock %.2f-%.2f s, CPU time %.2f-%.2f s (median %.2f s)",
                len(walls),
                walls[0],
                walls[-1],
                cpus[0],
                cpus[-1],
                statistics.median(cpus),
            )

    async def _run_canonical(self, jobs: list[tuple[Problem, int]], limits: Limits) -> list[Outcome]:
        outcomes = list(
            await asyncio.gather(
                *(
                    self.verifier.pool.run(
                        self.verifier.programs.program(
                            p, self.verifier.programs.reference(p) or "", guards=limits.guards
                        ),
                        limits=limits,
                        label=f"preflight:{p.task_id}",
                    )
                    for p, _ in jobs
                )
            )
        )
        checked = (self.verifier._checked(p, o, limits) for (p, _), o in zip(jobs, outcomes))
        return list(await asyncio.gather(*checked))

    async def _run_known_bad(self) -> list[tuple[Problem, str, Outcome]]:
        """The task's known-bad completions of a few problems, each under its problem's limits:
        (problem, name, checked outcome)."""
        problems = _spread(list(self.verifier.problems.values()), min(self.verifier.preflight_sample, 4))
        guards = self.verifier.pool.limits.guards
        jobs = [
            (p, name, completion)
            for p in problems
            for name, completion in self.verifier.programs.known_bad(p, guards=guards).items()
        ]
        outcomes = await asyncio.gather(
            *(
                self.verifier.pool.run(
                    self.verifier.programs.program(p, completion, guards=guards),
                    limits=self.verifier.limits_for(p.task_id),
                    label=f"preflight:{p.task_id}",
                )
                for p, _, completion in jobs
            )
        )
        checked = []
        for (problem, name, _), outcome in zip(jobs, outcomes):
            limits = self.verifier.limits_for(problem.task_id)
            checked.append((problem, name, await self.verifier._checked(problem, outcome, limits)))
        return checked

    @staticmethod
    def _refuse_known_bad(checked: list[tuple[Problem, str, Outcome]]) -> None:
        for problem, name, outcome in checked:
            if outcome.verdict is not Verdict.failed:
                raise SandboxError(
                    f"preflight: a known-bad completion ({name}) of {problem.task_id} was judged"
                    f" {outcome.verdict.value} ({outcome.detail}), not failed; refusing to start"
                )


def _spread(items: list, n: int) -> list:
    """Up to n items spread evenly over the list (first and last included)."""
    if len(items) <= n:
        return list(items)
    step = (len(items) - 1) / (n - 1) if n > 1 else 0
    return [items[round(i * step)] for i in range(n)]
