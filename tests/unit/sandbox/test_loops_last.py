"""Loops last (sandbox/verifier.py, ForkServerBackend `last`): a sample that meets its short
CPU-time limit runs again under the full limits after every other program waiting.

Invariants, over schedules of programs, `last` flags, cancellations and pool sizes: every
program not cancelled gets exactly one outcome, its own; a `last` program is sent only when no
other program waits, only to a jail holding nothing, never on more than max(1, jails - cores)
jails at once, and nothing is sent to a jail while it runs one. Through the verifier: verdicts
and the limits recorded are those of one run under the full limits; the caller hears of a
deferral once, only for samples that met the short limit, and the quick samples' verdicts come
before the loops'."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tasks import TASKS, humaneval
from sandbox import Limits, Outcome, SandboxPool, Verdict
from sandbox.forkserver.backend import ForkServerBackend
from sandbox.launchers.bare import BareLauncher
from sandbox.verifier import Timing, Verifier

LIMITS = Limits(timeout_s=5.0, cpu_time_s=0.1, guards=False)
PROGRAMS = {"pass": "x = 1\n", "fail": "raise ValueError('no')\n", "loop": "while True:\n    pass\n"}
EXPECTED = {"pass": Verdict.passed, "fail": Verdict.failed, "loop": Verdict.timeout}


def _watch_sends(box: ForkServerBackend, violations: list[str]) -> None:
    """Check the dispatch invariants at every send."""
    send = box._send

    def checked(worker, reserved, ticket) -> None:
        shared = [w for w in box._workers if not w.reserved]
        if ticket.last:
            if any(not t.cancelled for t in box._queued[False]):
                violations.append("a last program sent while others waited")
            if worker in shared and worker.in_flight:
                violations.append("a last program sent to a jail holding others")
            if len(box._running_last) > max(1, len(shared) - box._cores):
                violations.append(f"{len(box._running_last)} last programs at once")
        elif worker in box._running_last:
            violations.append("a program sent to a jail running a last one")
        send(worker, reserved, ticket)

    box._send = checked  # type: ignore[method-assign]


@settings(max_examples=12, deadline=None)
@given(
    jobs=st.lists(
        st.tuples(st.sampled_from(sorted(PROGRAMS)), st.booleans(), st.booleans()), min_size=1, max_size=14
    ).filter(lambda jobs: sum(kind == "loop" for kind, _, _ in jobs) <= 3),
    workers=st.integers(1, 3),
    cores=st.integers(1, 2),
    cancel_after=st.integers(0, 3),
)
def test_every_program_gets_its_own_outcome_and_last_ones_wait_alone(jobs, workers, cores, cancel_after):
    """jobs: (program, submitted last, cancelled `cancel_after` loop turns after submission)."""
    violations: list[str] = []

    async def main() -> list[Outcome | None]:
        box = ForkServerBackend(BareLauncher(), cgroups=False, depth=4)
        async with SandboxPool(workers=workers, limits=LIMITS, backend=box) as pool:
            box._cores = cores
            _watch_sends(box, violations)
            outcomes: list[list[Outcome]] = [[] for _ in jobs]
            tickets = [
                box.submit(PROGRAMS[kind], LIMITS, kind, done=outcomes[i].append, last=last)
                for i, (kind, last, _) in enumerate(jobs)
            ]
            for _ in range(cancel_after):
                await asyncio.sleep(0)
            for ticket, (_, _, cancel) in zip(tickets, jobs):
                if cancel:
                    box.cancel(ticket)
            wanted = [i for i, (_, _, cancel) in enumerate(jobs) if not cancel]
            for _ in range(400):  # at most 20 s: every loop takes 0.1 s of CPU
                if all(outcomes[i] for i in wanted):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.05)  # a second answer would come now
            assert pool.jails()  # still serving
            for got in outcomes:
                assert len(got) <= 1, got
            return [got[0] if got else None for got in outcomes]

    outcomes = asyncio.run(main())
    assert violations == []
    # Cancelling a program that was sent kills its jail: the others it held end as infrastructure
    # errors (the verifier runs them again), never with another program's verdict.
    allowed = {Verdict.infra_error} if any(cancel for _, _, cancel in jobs) else set()
    for (kind, _, cancel), outcome in zip(jobs, outcomes):
        if not cancel:
            assert outcome is not None and outcome.verdict in {EXPECTED[kind], *allowed}, (kind, outcome)


def test_last_programs_are_sent_after_every_program_waiting() -> None:
    """Twenty quick programs, then two loops submitted last: the jails get every quick one
    before either loop, and the loops one at a time (one jail more than cores)."""
    sent: list[str] = []

    async def main() -> None:
        box = ForkServerBackend(BareLauncher(), cgroups=False, depth=4)
        async with SandboxPool(workers=2, limits=LIMITS, backend=box):
            box._cores = 1
            send = box._send
            box._send = lambda worker, reserved, ticket: (
                sent.append(ticket.label),
                send(worker, reserved, ticket),
            )  # type: ignore[method-assign]
            answers = []
            for kind in ["pass", "fail"] * 10 + ["loop", "loop"]:
                answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
                box.submit(PROGRAMS[kind], LIMITS, kind, done=answer.set_result, last=kind == "loop")
                answers.append(answer)
            outcomes = await asyncio.wait_for(asyncio.gather(*answers), 30)
            assert [o.verdict for o in outcomes] == [Verdict.passed, Verdict.failed] * 10 + [
                Verdict.timeout
            ] * 2

    asyncio.run(main())
    assert sent == ["pass", "fail"] * 10 + ["loop", "loop"]


def test_closing_answers_the_last_programs_still_waiting() -> None:
    async def main() -> list[Outcome]:
        box = ForkServerBackend(BareLauncher(), cgroups=False, depth=4)
        pool = SandboxPool(workers=1, limits=LIMITS, backend=box)
        await pool.start()
        got: list[Outcome] = []
        box.submit(PROGRAMS["pass"], LIMITS, "quick", done=lambda o: None)  # holds the only jail
        box.submit(PROGRAMS["loop"], LIMITS, "loop", done=got.append, last=True)
        await pool.close()
        await asyncio.sleep(0.01)
        return got

    (outcome,) = asyncio.run(main())
    assert outcome.verdict is Verdict.infra_error and "before the program started" in outcome.detail


PROBLEM = humaneval.problem(
    "T/0", "def f(x):\n", "def check(c):\n    assert c(1) == 1\n", "f", "    return x\n"
)
SAMPLES = {
    "passes": ("    return x\n", Verdict.passed),
    "fails": ("    return 2\n", Verdict.failed),
    "loops": ("    while True:\n        pass\n", Verdict.timeout),
    # More CPU than the short limit, less than the full one: a pass, after its second run.
    "slow but right": (
        "    n = 0\n    for i in range(4_000_000):\n        n += i\n    return x\n",
        Verdict.passed,
    ),
}


def _verify(short_cpu_s: float) -> tuple[dict[str, Outcome], list[str], dict[str, int]]:
    """Each sample of SAMPLES through a calibrated Verifier: outcomes, the order of the verdicts,
    and how often each caller heard of a deferral."""
    order: list[str] = []
    deferrals = dict.fromkeys(SAMPLES, 0)

    async def main() -> dict[str, Outcome]:
        timing = Timing(cpu_floor_s=1.0, short_cpu_s=short_cpu_s)
        async with SandboxPool(workers=2, backend="none") as pool:
            verifier = Verifier(
                pool, [PROBLEM], programs=TASKS["humaneval"], timing=timing, preflight_sample=1
            )
            await verifier.preflight()
            results: dict[str, Outcome] = {}
            finished = asyncio.get_running_loop().create_future()

            def done(name: str, outcome: Outcome | BaseException) -> None:
                assert isinstance(outcome, Outcome), outcome
                order.append(name)
                results[name] = outcome
                if len(results) == len(SAMPLES) and not finished.done():
                    finished.set_result(None)

            def deferred(name: str) -> None:
                deferrals[name] += 1

            for name, (completion, _) in SAMPLES.items():
                verifier.submit(
                    PROBLEM, completion, lambda o, n=name: done(n, o), deferred=lambda n=name: deferred(n)
                )
            await asyncio.wait_for(finished, 60)
            assert verifier.rerun == (2 if short_cpu_s else 0)
            return results

    return asyncio.run(main()), order, deferrals


def test_loops_are_judged_last_with_the_verdicts_and_limits_of_one_run() -> None:
    outcomes, order, deferrals = _verify(short_cpu_s=0.05)
    single, _, none_deferred = _verify(short_cpu_s=0)
    for name, (_, verdict) in SAMPLES.items():
        assert outcomes[name].verdict is verdict is single[name].verdict, name
        assert outcomes[name].limits == single[name].limits, name  # the full limits, as one run
    assert outcomes["loops"].detail == single["loops"].detail == "CPU-time limit 1.0 s"
    assert deferrals == {"passes": 0, "fails": 0, "loops": 1, "slow but right": 1}
    assert set(none_deferred.values()) == {0}
    assert set(order[:2]) == {"passes", "fails"}  # the quick ones first


def test_a_twin_of_a_deferred_sample_hears_of_it_too() -> None:
    """Dedup: an identical sample submitted before or after the deferral is told once."""
    told: list[str] = []

    async def main() -> list[Outcome]:
        timing = Timing(cpu_floor_s=0.3, short_cpu_s=0.05)
        async with SandboxPool(workers=2, backend="none") as pool:
            verifier = Verifier(
                pool, [PROBLEM], programs=TASKS["humaneval"], timing=timing, preflight_sample=1
            )
            await verifier.preflight()
            loop_source = SAMPLES["loops"][0]
            answers: list[asyncio.Future[Outcome]] = []

            def submit(name: str) -> None:
                answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
                verifier.submit(PROBLEM, loop_source, answer.set_result, deferred=lambda: told.append(name))
                answers.append(answer)

            submit("first")
            submit("twin before")
            for _ in range(200):  # until the deferral
                if told:
                    break
                await asyncio.sleep(0.01)
            submit("twin after")
            return list(await asyncio.wait_for(asyncio.gather(*answers), 30))

    outcomes = asyncio.run(main())
    assert sorted(told) == ["first", "twin after", "twin before"]
    assert [o.verdict for o in outcomes] == [Verdict.timeout] * 3
    assert [o.reused for o in outcomes] == [False, True, True]
    assert (
        replace(outcomes[1], reused=False, wall_s=outcomes[0].wall_s, cpu_s=outcomes[0].cpu_s) == outcomes[0]
    )
