"""Replies in batches (sandbox/forkserver/pacing.py, worker.py's reply reading).

The pacer: over any schedule of saturation, pokes and jails running dry, it pauses at most once
per event-loop iteration, only in an iteration where the jails are saturated, never after
stop() and never with a pause of 0; a pause after a jail ran dry is at most half the one
before (down to a floor), and otherwise grows back by one step up to the longest. The reader: however the server's output is cut into reads (a reply split
anywhere, several in one read, the end in the same read as the last reply, a line nobody asked
for), every program gets exactly one outcome, its own reply's, in order, or an empty one (an
infrastructure error) when the output ends first. And a real pool under load does pause, with
every program's own verdict."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import Limits, SandboxPool, Verdict
from sandbox.forkserver.backend import ForkServerBackend
from sandbox.forkserver.pacing import MIN_PAUSE_S, PAUSE_S, PAUSE_STEP_S, Pacer
from sandbox.forkserver.worker import Worker, _Sent
from sandbox.launchers.bare import BareLauncher

LIMITS = Limits(timeout_s=5.0, cpu_time_s=2.5, guards=False)


async def _pace(saturation: list[bool], pokes: set[int], dry: set[int], stop_at: int | None, pause_s: float):
    """Run len(saturation) loop iterations; returns the pacer and its pauses: (iteration, seconds,
    whether a jail ran dry since the pause before)."""
    iteration = 0
    pauses: list[tuple[int, float, bool]] = []
    dried = False

    def saturated() -> bool:  # after the schedule: drained
        return iteration < len(saturation) and saturation[iteration]

    def sleep(seconds: float) -> None:
        nonlocal dried
        pauses.append((iteration, seconds, dried))
        dried = False

    pacer = Pacer(saturated, pause_s, sleep)
    done = asyncio.get_running_loop().create_future()

    def count() -> None:  # runs once per iteration, like the pacer's tick
        nonlocal iteration, dried
        if iteration in dry:
            pacer.ran_dry()
            dried = True
        if iteration in pokes:
            pacer.poke()
        if iteration == stop_at:
            pacer.stop()
        iteration += 1
        if iteration < len(saturation):
            asyncio.get_running_loop().call_soon(count)
        else:
            done.set_result(None)

    count()
    await done
    pacer.stop()  # as the backend's close() does
    await asyncio.sleep(0)  # a tick still scheduled runs now, and must not pause
    return pacer, pauses


@settings(max_examples=300, deadline=None)
@given(
    saturation=st.lists(st.booleans(), min_size=1, max_size=40),
    pokes=st.sets(st.integers(0, 39)),
    dry=st.sets(st.integers(0, 39)),
    stop_at=st.none() | st.integers(0, 39),
    pause_s=st.sampled_from([0.0, 0.002, PAUSE_S]),
)
def test_the_pacer_pauses_at_most_once_per_iteration_only_while_saturated_and_shorter_after_a_jail_ran_dry(
    saturation, pokes, dry, stop_at, pause_s
):
    pacer, pauses = asyncio.run(_pace(saturation, pokes, dry, stop_at, pause_s))
    paused_in = [i for i, _, _ in pauses]
    assert len(paused_in) == len(set(paused_in)), "two pauses in one iteration"
    assert pacer.pauses == len(pauses)
    for i in paused_in:
        assert i < len(saturation) and saturation[i], "paused while not saturated"
        assert stop_at is None or i <= stop_at, "paused after stop()"
    if pause_s == 0.0 or not pokes:
        assert pauses == []
    for _, seconds, _ in pauses:
        assert min(MIN_PAUSE_S, pause_s) <= seconds <= pause_s
    for (_, before, _), (_, after, dried) in zip(pauses, pauses[1:]):
        grown = min(pause_s, before + PAUSE_STEP_S)
        if dried:
            assert after <= max(MIN_PAUSE_S, grown / 2) + 1e-12, (
                "a jail ran dry, yet the pause did not shrink"
            )
        else:
            assert after == pytest.approx(grown), "the pause did not grow back"
    # a poke in a saturated iteration, still saturated in the next (where its tick runs): a pause
    started = [
        p
        for p in pokes
        if p + 1 < len(saturation)
        and saturation[p]
        and saturation[p + 1]
        and (stop_at is None or stop_at > p)
    ]
    if pause_s and started:
        assert min(started) + 1 in paused_in, "saturated and poked, yet no pause"


def _reply(index: int) -> bytes:
    # a program that ran and exited with status `index` without finishing check(): the outcome's
    # detail names the status, so each outcome shows whose reply it got
    reply = {
        "event": "result",
        "started": True,
        "nonce": "n",
        "timed_out": False,
        "ready": True,
        "status": '{"event":"ready"}\n',
        "output": "",
        "exit_status": index,
        "wall_s": 0.001,
        "cpu_s": 0.001,
    }
    return json.dumps(reply).encode() + b"\n"


async def _read(programs: int, replies: int, cuts: list[int], extra_line: bool, end: bool):
    worker = Worker(["unused"], "test", None, "none", depth=programs)
    worker._reading = True
    worker._replies_ended = asyncio.get_running_loop().create_future()
    answers: list[tuple[int, object]] = []
    for index in range(programs):
        sent = _Sent(LIMITS, lambda outcome, healthy, index=index: answers.append((index, outcome)))
        worker._sent.append(sent)
    worker._start_head()
    output = b"".join(_reply(100 + i) for i in range(replies)) + (_reply(999) if extra_line else b"")
    bounds = sorted({0, len(output), *(c % (len(output) + 1) for c in cuts)})
    for start, stop in zip(bounds, bounds[1:]):
        worker._on_stdout(output[start:stop])
    if end:
        worker._on_stdout(None)
    return worker, answers


@settings(max_examples=300, deadline=None)
@given(
    programs=st.integers(1, 6),
    answered=st.integers(0, 6),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    extra_line=st.booleans(),
    end=st.booleans(),
)
def test_every_program_gets_exactly_one_outcome_however_the_replies_are_cut(
    programs, answered, cuts, extra_line, end
):
    replies = min(answered, programs)
    extra_line = extra_line and replies == programs  # a line after every program was answered
    worker, answers = asyncio.run(_read(programs, replies, cuts, extra_line, end))
    ended = end or extra_line
    got = [index for index, _ in answers]
    assert got == list(range(replies if not ended else programs)), "each program once, in order"
    for index, outcome in answers:
        if index < replies:
            assert outcome.verdict is Verdict.failed and f"{100 + index}" in outcome.detail, outcome
        else:  # the output ended first: an infrastructure error, retried by the verifier
            assert outcome.verdict is Verdict.infra_error, outcome
    assert worker._reading is not ended
    assert worker._replies_ended.done() is ended


def test_a_saturated_pool_pauses_and_every_program_still_gets_its_own_verdict() -> None:
    """One jail more than cores (the least that pauses), each holding several programs."""
    programs = ["x = 1\n" if i % 3 else "raise ValueError('no')\n" for i in range(60)]
    workers = len(os.sched_getaffinity(0)) + 1

    async def main() -> tuple[list[Verdict], int]:
        box = ForkServerBackend(BareLauncher(), cgroups=False, depth=4)
        async with SandboxPool(workers=workers, limits=LIMITS, backend=box) as pool:
            outcomes = await asyncio.gather(*(pool.run(p, limits=LIMITS) for p in programs))
            return [o.verdict for o in outcomes], box._pacer.pauses

    verdicts, pauses = asyncio.run(main())
    assert verdicts == [Verdict.passed if i % 3 else Verdict.failed for i in range(60)]
    assert pauses > 0


@pytest.mark.parametrize("workers", [1, 2])
def test_no_more_jails_than_cores_never_pauses(workers: int) -> None:
    """With fewer jails than cores the engine has a core of its own; with one per core, a jail
    that ran dry during a pause would leave its core idle. Pausing would only make them wait."""
    programs = ["x = 1\n"] * 30

    async def main() -> tuple[list[Verdict], int]:
        box = ForkServerBackend(BareLauncher(), cgroups=False, depth=4)
        box._cores = 2
        async with SandboxPool(workers=workers, limits=LIMITS, backend=box) as pool:
            outcomes = await asyncio.gather(*(pool.run(p, limits=LIMITS) for p in programs))
            return [o.verdict for o in outcomes], box._pacer.pauses

    assert asyncio.run(main()) == ([Verdict.passed] * 30, 0)


def test_a_lone_program_is_answered_without_a_pause() -> None:
    async def main() -> tuple[Verdict, int]:
        box = ForkServerBackend(BareLauncher(), cgroups=False)
        async with SandboxPool(workers=2, limits=LIMITS, backend=box) as pool:
            outcome = await pool.run("x = 1\n", limits=LIMITS)
            return outcome.verdict, box._pacer.pauses

    assert asyncio.run(main()) == (Verdict.passed, 0)
