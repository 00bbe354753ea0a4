"""ForkServerBackend.start() (sandbox/forkserver/backend.py): the self-tests of the shared jails
and of the reserved one run at once (start-up, issue 14), and a failing one is refused as
before: one line naming the verdict, the shared jails' failure first, every jail closed. Uses the
bare launcher (`--sandbox none`: the real fork-server as a plain process), no jails, no cgroups."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from sandbox import Limits, Outcome, Verdict
from sandbox.errors import SandboxError
from sandbox.forkserver.backend import ForkServerBackend
from sandbox.launchers.bare import BareLauncher

LIMITS = Limits(timeout_s=5.0, cpu_time_s=2.5, guards=False)


class WatchedBackend(ForkServerBackend):
    """The real backend, its runs watched: which self-tests were in flight together; the
    self-test of the kinds in `fails` (reserved or not) made to fail."""

    def __init__(self, fails: frozenset[bool] = frozenset()):
        super().__init__(BareLauncher(), cgroups=False)
        self.fails = fails
        self.in_flight: set[bool] = set()
        self.most_at_once = 0

    async def run(
        self, program: str, limits: Limits, label: str = "", reserved: bool = False, data=None
    ) -> Outcome:
        self.in_flight.add(reserved)
        self.most_at_once = max(self.most_at_once, len(self.in_flight))
        try:
            outcome = await super().run(program, limits, label, reserved, data)
        finally:
            self.in_flight.discard(reserved)
        if label == "self-test" and reserved in self.fails:
            return replace(outcome, verdict=Verdict.failed, detail=f"told to fail (reserved={reserved})")
        return outcome


@pytest.mark.parametrize("workers", [1, 3])
def test_both_self_tests_run_at_once_and_the_pool_starts(workers):
    """One jail of each kind is ready when start() returns, the other shared jails join in the
    background (counted as starting until then): every jail is counted at every moment."""

    async def main() -> tuple[int, dict, dict]:
        backend = WatchedBackend()
        await backend.start(LIMITS, workers=workers)
        try:
            at_start = backend.jail_counts()
            while backend.jail_counts()["verify"]["idle"] < workers:
                assert sum(backend.jail_counts()["verify"].values()) == workers
                await asyncio.sleep(0.01)
            return backend.most_at_once, at_start, backend.jail_counts()
        finally:
            await backend.close()

    at_once, at_start, joined = asyncio.run(asyncio.wait_for(main(), 60))
    assert at_once == 2
    assert at_start["verify"]["idle"] == 1 and at_start["verify"]["restarting"] == workers - 1
    assert at_start["confirm"]["idle"] == 1
    assert joined["verify"] == {"busy": 0, "idle": workers, "restarting": 0, "broken": 0}


def test_a_pool_closed_while_jails_still_join_leaves_none_running():
    async def main() -> tuple[list[int], dict]:
        backend = WatchedBackend()
        await backend.start(LIMITS, workers=4)
        await backend.close()  # at once: three jails are still starting
        return backend.worker_pids(), backend.jail_counts()

    pids, counts = asyncio.run(asyncio.wait_for(main(), 60))
    assert pids == []
    assert counts["verify"] == {"busy": 0, "idle": 0, "restarting": 0, "broken": 0}


@pytest.mark.parametrize(
    "fails, says",
    [
        (frozenset({False}), "reserved=False"),
        (frozenset({True}), "reserved=True"),
        (frozenset({False, True}), "reserved=False"),  # the shared jails' failure is named first
    ],
)
def test_a_failing_self_test_is_refused_in_one_line_and_every_jail_closed(fails, says):
    async def main() -> tuple[str, dict]:
        backend = WatchedBackend(fails)
        with pytest.raises(SandboxError) as caught:
            await backend.start(LIMITS, workers=2)
        return str(caught.value), backend.jail_counts()

    message, counts = asyncio.run(asyncio.wait_for(main(), 60))
    assert "self-test failed: failed: told to fail" in message and says in message
    assert "\n" not in message
    assert all(n == 0 for role in counts.values() for n in role.values()), counts
