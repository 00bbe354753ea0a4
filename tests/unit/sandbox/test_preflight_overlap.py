"""sandbox/preflight.py: when every limit is known before anything runs (a cached calibration,
or a fixed --timeout), the preflight sample's canonical solutions and the known-bad controls run
at once (start-up of `engine verify`, issue 14); when measuring, the controls wait for the
limits they are judged under. Either way every control runs, under its problem's final limits,
and a misjudging sandbox is refused with the same message as when they ran one after the other."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest

from engine.tasks import TASKS
from engine.tasks.humaneval import KNOWN_BAD, KNOWN_BAD_GUARDED, problem
from sandbox import Limits, Outcome, SandboxPool, Verdict
from sandbox.calibration import CalibrationCache
from sandbox.errors import SandboxError
from sandbox.verifier import Timing, Verifier

HUMANEVAL = TASKS["humaneval"]
PROBLEMS = [
    problem(f"T/{i}", f"def f{i}(x):\n", "def check(c):\n    assert c(1) == 1\n", f"f{i}", "    return x\n")
    for i in range(6)
]
BAD = [code.strip() for code in {**KNOWN_BAD, **KNOWN_BAD_GUARDED}.values()]


def kind_of(program: str) -> str:
    if "return x" in program:
        return "reference"
    assert any(bad in program for bad in BAD), program
    return "known-bad"


class WatchingBackend:
    """Judges references and known-bad completions (or misjudges them, when told); notes what
    was in flight together and the limits each known-bad completion ran under."""

    name = "watching"

    def __init__(self, *, reference_fails: bool = False, bad_passes: bool = False):
        self.reference_fails = reference_fails
        self.bad_passes = bad_passes
        self.in_flight: Counter[str] = Counter()
        self.together: set[frozenset[str]] = set()
        self.ran: Counter[str] = Counter()
        self.bad_limits: dict[str, set[Limits]] = {}

    async def start(self, limits: Limits, workers: int) -> None:
        pass

    async def run(self, program: str, limits: Limits, label: str = "", reserved: bool = False) -> Outcome:
        kind = kind_of(program)
        self.ran[kind] += 1
        if kind == "known-bad":
            self.bad_limits.setdefault(label.removeprefix("preflight:"), set()).add(limits)
        self.in_flight[kind] += 1
        self.together.add(frozenset(+self.in_flight))
        for _ in range(3):  # let every other caller start what it can
            await asyncio.sleep(0)
        self.in_flight[kind] -= 1
        passed = not self.reference_fails if kind == "reference" else self.bad_passes
        verdict = Verdict.passed if passed else Verdict.failed
        return Outcome(verdict, verdict.value, 0.01, self.name, limits, "", cpu_s=0.01)

    async def close(self) -> None:
        pass


def preflight(backend: WatchingBackend, cache: CalibrationCache | None, timing: Timing) -> Verifier:
    async def main() -> Verifier:
        async with SandboxPool(workers=4, backend=backend) as pool:
            verifier = Verifier(
                pool, PROBLEMS, programs=HUMANEVAL, timing=timing, preflight_sample=3, calibration_cache=cache
            )
            await verifier.preflight()
            return verifier

    return asyncio.run(main())


PATHS = ("measured", "cached", "fixed")


def run_path(path: str, tmp_path, backend: WatchingBackend) -> Verifier:
    cache = CalibrationCache(tmp_path)
    timing = Timing(runs=1, timeout_s=5.0 if path == "fixed" else None)
    if path == "cached":
        preflight(WatchingBackend(), cache, timing)  # fills the cache
    return preflight(backend, cache if path != "fixed" else None, timing)


@pytest.mark.parametrize("path", PATHS)
def test_references_and_controls_overlap_only_when_the_limits_are_known_before(path, tmp_path):
    """Invariant: cached or fixed: a reference and a known-bad completion were in flight together;
    measured: never (the controls are judged under the limits measured first)."""
    backend = WatchingBackend()
    run_path(path, tmp_path, backend)
    overlapped = frozenset({"reference", "known-bad"}) in backend.together
    assert overlapped == (path != "measured")


@pytest.mark.parametrize("path", PATHS)
def test_every_control_runs_under_its_problems_final_limits(path, tmp_path):
    backend = WatchingBackend()
    verifier = run_path(path, tmp_path, backend)
    controls = len(KNOWN_BAD) + len(KNOWN_BAD_GUARDED)
    assert backend.ran["known-bad"] == 3 * controls  # min(preflight_sample, 4) problems
    assert backend.ran["reference"] == {"measured": 6, "cached": 3, "fixed": 3}[path]
    for task_id, limits in backend.bad_limits.items():
        assert limits == {verifier.limits_for(task_id)}, task_id


@pytest.mark.parametrize(
    "path, reference_fails, bad_passes", list(itertools.product(PATHS, [False, True], [False, True]))
)
def test_a_misjudging_sandbox_is_refused_references_first(path, reference_fails, bad_passes, tmp_path):
    """The message names what ran first before: a failing reference before a passing control."""
    backend = WatchingBackend(reference_fails=reference_fails, bad_passes=bad_passes)
    if not (reference_fails or bad_passes):
        run_path(path, tmp_path, backend)
        return
    with pytest.raises(SandboxError) as caught:
        run_path(path, tmp_path, backend)
    says = "canonical solution of T/0 did not pass" if reference_fails else "known-bad completion"
    assert says in str(caught.value) and "\n" not in str(caught.value)
