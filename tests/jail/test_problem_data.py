"""Problem data sent to each jail once (server.py's PROTOCOL, "Problem data"), on real
fork-servers (--sandbox none: the protocol is the same in every jail, and it starts fast)."""

from __future__ import annotations

import asyncio
import json

import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.forkserver.backend import ForkServerBackend
from sandbox.launchers import LAUNCHERS
from sandbox.limits import Limits
from sandbox.pool import SandboxPool
from sandbox.verdicts import Verdict

LIMITS = Limits(timeout_s=10.0)
ECHO = "import sys\nsys.stdout.write(__problem_data__.decode())\n"
# Problems of different sizes: with a 700-byte budget a jail holds two or three at most.
BLOBS = [(f"problem {i}:" + "x" * size).encode() for i, size in enumerate((10, 200, 300, 650, 1200))]


def _pool(workers: int, recycle_after: int) -> SandboxPool:
    backend = ForkServerBackend(
        LAUNCHERS["none"](), recycle_after=recycle_after, cgroups=False, data_budget=700
    )
    return SandboxPool(workers=workers, limits=LIMITS, backend=backend)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    workers=st.integers(1, 2),
    recycle_after=st.integers(1, 6),
    schedule=st.lists(
        st.lists(st.integers(0, len(BLOBS) - 1), min_size=1, max_size=3), min_size=1, max_size=8
    ),
)
def test_every_program_gets_its_own_problems_data(workers, recycle_after, schedule):
    """Invariant: whatever the order of problems, the jails (1 or 2), eviction (a tiny budget,
    one blob larger than it) and restarts (recycled every few programs), every program reads
    exactly its own problem's data, and no jail is sent a blob it holds or asked for one it
    lacks (the server refuses both: an infra_error here). Batches run at once (pipelined)."""

    async def body() -> list[list[tuple[Verdict, str]]]:
        async with _pool(workers, recycle_after) as pool:
            results = []
            for batch in schedule:
                outcomes = await asyncio.gather(*(pool.run(ECHO, data=BLOBS[i]) for i in batch))
                results.append([(o.verdict, o.output) for o in outcomes])
            return results

    for batch, results in zip(schedule, uvloop.run(body())):
        assert results == [(Verdict.passed, BLOBS[i].decode()) for i in batch]


HOSTILE = """
import ctypes, sys
data = __problem_data__
ctypes.memset(id(data) + sys.getsizeof(b"") - 1, ord("!"), len(data))  # the bytes' own buffer
globals()["__problem_data__"] = b"evil"
sys.modules["builtins"].__problem_data__ = b"evil"
for frame_globals in [f.f_globals for f in [sys._getframe()]]:
    frame_globals["__problem_data__"] = b"evil"
sys.stdout.write(data.decode())
"""


BIG = b"a larger problem:" + b"z" * 5000  # larger than the programs' own frames


def test_a_candidate_cannot_change_the_data_of_later_programs():
    """Invariant: a program that overwrites its blob in place (ctypes) and rebinds every name
    it can reach changes only its own forked copy: the next program on the same jail, which
    gets only the digest, still reads the original bytes."""

    async def body():
        async with _pool(1, 1000) as pool:
            [worker] = [w for w in pool.backend._workers if not w.reserved]
            hostile = await pool.run(HOSTILE, data=BIG)
            before = worker.bytes_written
            after = [await pool.run(ECHO, data=BIG) for _ in range(2)]
            return hostile, after, worker.bytes_written - before

    hostile, after, sent = uvloop.run(body())
    assert hostile.output == "!" * len(BIG)  # it did overwrite its own copy
    assert [(o.verdict, o.output) for o in after] == [(Verdict.passed, BIG.decode())] * 2
    assert sent < len(BIG)  # the two programs after it came with its digest only


def test_a_program_without_data_sees_none():
    """A program sent no data sees no `__problem_data__` (the probe and HumanEval programs)."""

    async def body():
        async with _pool(1, 1000) as pool:
            return await pool.run("assert '__problem_data__' not in globals()")

    assert uvloop.run(body()).verdict is Verdict.passed


def test_the_task_kinds_judge_alike_with_their_inputs_as_problem_data():
    """Invariant: for every fixture problem of stdio, call and evalplus, with its reference, the
    generic known-bad completions and the dataset's incorrect ones, the program that reads its
    inputs from the problem data (sent to the jail once) gets the same judgement, test counts
    included, as the self-contained program that embeds them (nsjail, like the kinds' tests)."""
    from pathlib import Path

    from engine.tasks import load_dataset
    from engine.tasks.hooks import prepare

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"

    async def body():
        limits = Limits(timeout_s=20.0, cpu_time_s=20.0)
        async with SandboxPool(workers=2, limits=limits, backend="nsjail") as pool:
            pairs = []
            for kind in ("stdio", "call", "evalplus"):
                loaded = load_dataset(str(fixtures / f"{kind}.jsonl"))
                task, problems = loaded.task, loaded.problems
                await prepare(task, problems, pool)
                incorrect = getattr(task, "incorrect", lambda p: [])
                for p in problems:
                    bad = list(task.known_bad(p, guards=True).values()) + list(incorrect(p))
                    for completion in [task.reference(p) or "", *bad]:
                        embedded = await pool.run(task.program(p, completion, guards=True))
                        with_data = await pool.run(
                            task.program_with_data(p, completion, guards=True), data=task.data(p)
                        )
                        pairs.append((p.task_id, task.judge(p, embedded), task.judge(p, with_data)))
            return pairs

    pairs = uvloop.run(body())
    assert len(pairs) > 10
    for task_id, embedded, with_data in pairs:
        assert (task_id, with_data.verdict, with_data.tests_passed, with_data.tests_total) == (
            task_id,
            embedded.verdict,
            embedded.tests_passed,
            embedded.tests_total,
        )


def test_the_verifier_sends_a_problems_inputs_as_data():
    """Invariant: verifying samples of a stdio problem through the Verifier (the engine's path)
    passes the reference and fails a wrong one, and the program sent with each sample carries
    no test input (the inputs went as problem data: the bytes written per sample stay below the
    size of the inputs)."""
    from pathlib import Path

    from engine.tasks import load_dataset
    from sandbox.verifier import Verifier

    loaded = load_dataset(str(Path(__file__).resolve().parents[1] / "fixtures" / "tasks" / "stdio.jsonl"))
    task, problem = loaded.task, loaded.problems[0]

    async def body():
        backend = ForkServerBackend(LAUNCHERS["none"](), cgroups=False)
        async with SandboxPool(workers=1, limits=LIMITS, backend=backend) as pool:
            verifier = Verifier(pool, [problem], programs=task, dedup=False)
            [worker] = [w for w in backend._workers if not w.reserved]
            sent: list[bytes] = []
            write = worker.proc.stdin.write
            worker.proc.stdin.write = lambda frames: (sent.append(frames), write(frames))[1]
            good = await verifier.verify(problem, task.reference(problem) or "")
            bad = await verifier.verify(problem, "print('no')\n")
            return good, bad, sent

    good, bad, sent = uvloop.run(body())
    assert good.verdict is Verdict.passed and bad.verdict is not Verdict.passed
    blob = task.data(problem)
    assert len(sent) == 2 and sent[0].endswith(blob) and blob not in sent[1]  # the blob, once
    for frames in sent:
        request = json.loads(frames[4 : 4 + int.from_bytes(frames[:4], "big")])
        config = json.loads(json.loads(request["program"].rsplit("_drive(", 1)[1].rstrip(")\n")))
        assert "inputs" not in config and request["data"]  # read from the data named
