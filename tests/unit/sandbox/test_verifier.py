"""sandbox/verifier.py with a scripted backend: dedup, calibration, preflight, retries. The
command (`engine verify --retry timeout`, `--sandbox none`) is in tests/jail/test_verify_retry.py."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.tasks import TASKS, humaneval
from engine.tasks.humaneval import KNOWN_BAD
from sandbox import Limits, Outcome, SandboxPool, Verdict
from sandbox.errors import SandboxError
from sandbox.verifier import Timing, Verifier

PROBLEMS = [
    humaneval.problem(
        f"T/{i}", f"def f{i}(x):\n", "def check(c):\n    assert c(1) == 1\n", f"f{i}", "    return x\n"
    )
    for i in range(3)
] + [humaneval.problem("T/none", "def g(x):\n", "def check(c):\n    assert c(1) == 1\n", "g", None)]
HUMANEVAL = TASKS["humaneval"]


class ScriptedBackend:
    """Judges a program by what its completion says; counts runs; can be told to misjudge."""

    name = "scripted"

    def __init__(self, *, canonical_fails: bool = False, bad_passes: bool = False, delay_s: float = 0.0):
        self.runs: list[str] = []
        self.canonical_fails = canonical_fails
        self.bad_passes = bad_passes
        self.delay_s = delay_s

    async def start(self, limits: Limits, workers: int) -> None:
        pass

    async def run(self, program: str, limits: Limits, label: str = "", reserved: bool = False) -> Outcome:
        self.runs.append(program)
        await asyncio.sleep(self.delay_s)
        if "return x" in program:
            verdict = Verdict.failed if self.canonical_fails else Verdict.passed
            wall = 0.5 if "f2" in program else 0.01
        elif any(bad.strip() in program for bad in KNOWN_BAD.values()):
            verdict, wall = (Verdict.passed if self.bad_passes else Verdict.failed), 0.01
        elif "while True" in program:
            verdict, wall = Verdict.timeout, limits.timeout_s
        else:
            verdict, wall = Verdict.failed, 0.01
        return Outcome(verdict, verdict.value, wall, self.name, limits, "", cpu_s=wall)

    async def close(self) -> None:
        pass


def run(body, backend: ScriptedBackend, **kwargs):
    async def main():
        async with SandboxPool(workers=4, backend=backend) as pool:
            verifier = Verifier(pool, PROBLEMS, programs=HUMANEVAL, **kwargs)
            return await body(verifier)

    return asyncio.run(main())


def test_dedup_runs_identical_samples_once_even_in_flight() -> None:
    backend = ScriptedBackend(delay_s=0.02)

    async def body(verifier: Verifier) -> list[Outcome]:
        await verifier.preflight()
        before = len(backend.runs)
        samples = ["    return x\n"] * 5 + ["    return 2\n"] * 3 + ["    return x\n"]
        outcomes = await asyncio.gather(*(verifier.verify(PROBLEMS[0], c) for c in samples))
        assert (
            len(backend.runs) - before == 2
        )  # one per distinct completion, though all were in flight at once
        other_problem = await verifier.verify(PROBLEMS[1], "    return 2\n")  # same text, other problem: runs
        assert len(backend.runs) - before == 3 and not other_problem.reused
        assert verifier.reused == 7
        return outcomes

    outcomes = run(body, backend)
    assert [o.verdict for o in outcomes] == [Verdict.passed] * 5 + [Verdict.failed] * 3 + [Verdict.passed]
    assert sum(o.reused for o in outcomes) == 7
    assert all(o.cpu_s == 0 and o.wall_s == 0 for o in outcomes if o.reused)


def test_no_dedup_runs_everything_and_sandbox_faults_are_never_reused() -> None:
    backend = ScriptedBackend()

    async def body(verifier: Verifier) -> None:
        await verifier.preflight()
        before = len(backend.runs)
        await asyncio.gather(*(verifier.verify(PROBLEMS[0], "    return x\n") for _ in range(4)))
        assert len(backend.runs) - before == 4 and verifier.reused == 0

    run(body, backend, dedup=False)

    fault = Outcome(Verdict.infra_error, "sandbox fault: worker died", 0.1, "x", Limits(), "")
    crash = Outcome(Verdict.error, "killed by SIGSEGV", 0.1, "x", Limits(), "")

    async def seeded(verifier: Verifier) -> tuple[Outcome, Outcome]:
        verifier.seed("T/0", "    boom\n", fault)
        verifier.seed("T/0", "    crash\n", crash)
        return await verifier.verify(PROBLEMS[0], "    boom\n"), await verifier.verify(
            PROBLEMS[0], "    crash\n"
        )

    ran, reused = run(seeded, ScriptedBackend())
    assert not ran.reused and ran.verdict is Verdict.failed  # run again, not the seeded fault
    assert reused.reused and reused.detail == "killed by SIGSEGV"


def test_calibrated_limits_per_problem_and_the_fixed_override() -> None:
    timing = Timing(floor_s=1.0, factor=10.0, ceiling_s=4.0, default_s=3.0)

    async def body(verifier: Verifier) -> dict[str, float]:
        await verifier.preflight()
        return {p.task_id: verifier.limits_for(p.task_id).timeout_s for p in PROBLEMS}

    limits = run(body, ScriptedBackend(), timing=timing)
    # 0.01 s -> the floor; 0.5 s x 10 -> capped at the ceiling; no canonical solution -> the default
    assert limits == {"T/0": 1.0, "T/1": 1.0, "T/2": 4.0, "T/none": 3.0}
    fixed = run(body, ScriptedBackend(), timing=Timing(timeout_s=7.5))
    assert set(fixed.values()) == {7.5}
    assert Timing(floor_s=2, factor=10, ceiling_s=30).limit(0.4) == 4.0


@pytest.mark.parametrize(
    ("backend", "says"),
    [
        (ScriptedBackend(canonical_fails=True), "canonical solution of T/0 did not pass"),
        (ScriptedBackend(bad_passes=True), "known-bad completion"),
    ],
)
def test_preflight_refuses_a_misjudging_sandbox(backend: ScriptedBackend, says: str) -> None:
    async def body(verifier: Verifier) -> None:
        await verifier.preflight()

    with pytest.raises(SandboxError) as caught:
        run(body, backend)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_known_answers_at_once_from_verdicts_already_in_and_never_runs_anything() -> None:
    backend = ScriptedBackend()

    async def body(verifier: Verifier) -> None:
        assert verifier.known("T/0", "    return x\n") is None  # nothing verified yet
        first = await verifier.verify(PROBLEMS[0], "    return x\n")
        runs = len(backend.runs)
        again = verifier.known("T/0", "    return x\n")
        assert again is not None and again.reused and again.verdict is first.verdict and not first.reused
        assert verifier.known("T/1", "    return x\n") is None  # the same text for another problem is new
        assert len(backend.runs) == runs and verifier.reused == 1

    run(body, backend)

    async def without_dedup(verifier: Verifier) -> None:
        await verifier.verify(PROBLEMS[0], "    return x\n")
        assert verifier.known("T/0", "    return x\n") is None

    run(without_dedup, ScriptedBackend(), dedup=False)


# --- infrastructure errors and load-sensitive timeouts ----------------------------------------

INFRA = Outcome(
    Verdict.infra_error, "sandbox fault: the worker died while the program ran", 0.1, "s", Limits(), ""
)
SENSITIVE = Outcome(
    Verdict.timeout, "wall-clock limit 3.0 s", 3.0, "s", Limits(), "", cpu_s=0.01, load_sensitive=True
)
OVERRUN = Outcome(Verdict.timeout, "CPU-time limit 3.0 s", 3.0, "s", Limits(), "", cpu_s=3.0)
PASSED = Outcome(Verdict.passed, "check() returned", 0.01, "s", Limits(), "")
FAILED = Outcome(Verdict.failed, "AssertionError", 0.01, "s", Limits(), "")


class ScheduleBackend:
    """Answers each run with the next outcome of a schedule (then the last one forever), and
    records which runs went to the reserved worker."""

    name = "schedule"

    def __init__(self, schedule: list[Outcome]):
        self.schedule = list(schedule)
        self.calls: list[bool] = []  # reserved?

    async def start(self, limits: Limits, workers: int) -> None:
        pass

    async def run(self, program: str, limits: Limits, label: str = "", reserved: bool = False) -> Outcome:
        self.calls.append(reserved)
        return self.schedule.pop(0) if len(self.schedule) > 1 else self.schedule[0]

    async def close(self) -> None:
        pass


def verify_with(
    schedule: list[Outcome], completion: str = "    return 2\n", repeat: int = 1
) -> tuple[list[Outcome], list[bool]]:
    backend = ScheduleBackend(schedule)

    async def main() -> list[Outcome]:
        async with SandboxPool(workers=2, backend=backend) as pool:
            verifier = Verifier(
                pool, PROBLEMS, programs=HUMANEVAL, timing=Timing(timeout_s=3.0), retry_delay_s=0.0
            )
            return [await verifier.verify(PROBLEMS[0], completion) for _ in range(repeat)]

    return asyncio.run(main()), backend.calls


@given(st.lists(st.sampled_from([INFRA, SENSITIVE, OVERRUN, PASSED, FAILED]), min_size=1, max_size=8))
def test_what_is_stored_is_final_or_a_persistent_infra_error(schedule: list[Outcome]) -> None:
    """Invariants, for any schedule of what the sandbox answers: the outcome is final (never
    load-sensitive) or infra_error; infra_error only after INFRA_ATTEMPTS sandbox faults in a row;
    a load-sensitive timeout is run again on the reserved worker, and only then; at most
    2 x INFRA_ATTEMPTS runs in all."""
    from sandbox.verifier import INFRA_ATTEMPTS

    (outcome,), calls = verify_with(schedule)
    assert not outcome.load_sensitive
    assert outcome.verdict is Verdict.infra_error or outcome.final
    answers = (schedule + [schedule[-1]] * 16)[: len(calls)]
    if outcome.verdict is Verdict.infra_error:
        assert answers[-INFRA_ATTEMPTS:] == [INFRA] * INFRA_ATTEMPTS
    first = next((i for i, a in enumerate(answers) if a is not INFRA), None)
    if first is not None and answers[first] is SENSITIVE:
        assert calls[: first + 1] == [False] * (first + 1) and all(calls[first + 1 :])
    else:
        assert not any(calls)
    assert len(calls) <= 2 * INFRA_ATTEMPTS


def test_infra_errors_are_retried_and_never_reused() -> None:
    from sandbox.verifier import INFRA_ATTEMPTS

    recovered, calls = verify_with([INFRA, INFRA, PASSED])
    assert recovered[0].verdict is Verdict.passed and len(calls) == 3
    persistent, calls = verify_with([INFRA], repeat=2)
    assert [o.verdict for o in persistent] == [Verdict.infra_error] * 2 and not any(
        o.reused for o in persistent
    )
    assert len(calls) == 2 * INFRA_ATTEMPTS  # the second identical sample ran again


def test_a_load_sensitive_timeout_is_confirmed_once_and_busy_loops_are_not() -> None:
    starved, calls = verify_with([SENSITIVE, PASSED], repeat=2)
    assert [o.verdict for o in starved] == [Verdict.passed] * 2 and calls == [False, True]  # then reused
    assert starved[1].reused
    sleeper, calls = verify_with([SENSITIVE], repeat=2)
    assert sleeper[0].detail == "wall-clock limit 3.0 s (confirmed on the reserved sandbox)" and calls == [
        False,
        True,
    ]
    assert sleeper[1].reused and sleeper[1].verdict is Verdict.timeout  # confirmed: final, reused
    loop, calls = verify_with([OVERRUN], repeat=2)
    assert loop[0].detail == "CPU-time limit 3.0 s" and calls == [False]
