"""The fork-server protocol pipelined (sandbox/forkserver/worker.py, backend.py): a worker holds
its next program while it runs the current one, and whatever the schedule (how many programs,
how many per worker, which of them end how, a worker dying with programs queued behind the one
that killed it), every program gets exactly one outcome. Uses the bare launcher (`--sandbox
none`: the real fork-server as a plain process), no jails, no cgroups."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import Limits, SandboxPool, Verdict
from sandbox.forkserver.backend import ForkServerBackend
from sandbox.launchers.bare import BareLauncher

PROGRAMS = {
    "pass": "x = 1\n",
    "fail": "raise ValueError('no')\n",
    "sleep": "import time\ntime.sleep(0.02)\n",
    # kills its fork-server: the worker dies with whatever was queued behind this program
    "die": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(1)\n",
}
EXPECTED = {
    "pass": Verdict.passed,
    "fail": Verdict.failed,
    "sleep": Verdict.passed,
    "die": Verdict.infra_error,
}
LIMITS = Limits(timeout_s=5.0, cpu_time_s=2.5, guards=False)


def backend(depth: int) -> ForkServerBackend:
    return ForkServerBackend(BareLauncher(), cgroups=False, depth=depth)


async def run_all(kinds: list[str], workers: int, depth: int) -> list:
    async with SandboxPool(workers=workers, limits=LIMITS, backend=backend(depth)) as pool:
        assert pool.capacity == workers * depth
        calls = (pool.run(PROGRAMS[kind], limits=LIMITS) for kind in kinds)
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 60)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(sorted(PROGRAMS)), min_size=1, max_size=14),
    workers=st.integers(1, 2),
    depth=st.integers(1, 6),
)
def test_every_program_gets_exactly_one_outcome_under_any_schedule(kinds, workers, depth) -> None:
    """Invariant: one Outcome per call, never an exception or a hang; each program's own verdict,
    except that a program queued on a worker that died gets infra_error (the verifier retries it)."""
    outcomes = asyncio.run(run_all(kinds, workers, depth))
    assert len(outcomes) == len(kinds)
    for kind, outcome in zip(kinds, outcomes):
        assert not isinstance(outcome, BaseException), outcome
        if "die" in kinds:
            assert outcome.verdict in (EXPECTED[kind], Verdict.infra_error), (kind, outcome)
        else:
            assert outcome.verdict is EXPECTED[kind], (kind, outcome)


def test_a_worker_holds_its_next_program_while_it_runs_the_current_one() -> None:
    async def main() -> tuple[int, list[Verdict]]:
        box = backend(2)
        async with SandboxPool(workers=1, limits=LIMITS, backend=box) as pool:
            running = [
                asyncio.ensure_future(pool.run(PROGRAMS[kind], limits=LIMITS)) for kind in ("sleep", "pass")
            ]
            await asyncio.sleep(0.01)
            (worker,) = [w for w in box._workers if not w.reserved]
            held = worker.in_flight
            return held, [o.verdict for o in await asyncio.gather(*running)]

    held, verdicts = asyncio.run(main())
    assert held == 2 and verdicts == [Verdict.passed, Verdict.passed]


def test_a_worn_out_worker_is_replaced_after_its_last_program_not_during_it() -> None:
    """recycle_after with two programs in flight: both get their own verdicts (none is cut short
    by the recycling), and the jail is replaced."""

    async def main() -> tuple[list[Verdict], int]:
        box = ForkServerBackend(BareLauncher(), cgroups=False, depth=2, recycle_after=3)
        async with SandboxPool(workers=1, limits=LIMITS, backend=box) as pool:
            kinds = ["sleep", "pass", "fail", "sleep", "pass"]
            outcomes = await asyncio.gather(*(pool.run(PROGRAMS[k], limits=LIMITS) for k in kinds))
            return [o.verdict for o in outcomes], box.restarts

    verdicts, restarts = asyncio.run(main())
    assert verdicts == [EXPECTED[k] for k in ["sleep", "pass", "fail", "sleep", "pass"]]
    assert restarts >= 1
