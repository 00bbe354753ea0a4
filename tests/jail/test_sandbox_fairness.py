"""A verdict depends only on its own sample: neighbours that hog the CPU or fill memory in ways
no rlimit sees must not change other samples' verdicts, nor kill the fork-server.

Runs through the real nsjail sandbox with the default pool size (two sandboxes per core), so
the hog competes with its neighbours exactly as in a sweep.
"""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from engine.records import Problem
from engine.tasks import TASKS, load_problems
from sandbox import Limits, Outcome, SandboxPool, Verdict, check_program
from sandbox.pool import default_workers
from sandbox.verifier import Timing, Verifier

# Forks busy processes that each leave the child's session (setsid), as many as the jail allows,
# then waits: its own process uses no CPU, so its own CPU-time limit never fires.
HOG = """
import os
for _ in range(40):
    try:
        if os.fork() == 0:
            os.setsid()
            while True:
                pass
    except OSError:
        break
os.wait()
"""


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return load_problems()


def he(problem: Problem, completion: str) -> str:
    return check_program(problem.prompt + completion, problem.payload["test"], problem.payload["entry_point"])


def test_a_cpu_hog_does_not_make_correct_neighbours_time_out(problems: list[Problem]) -> None:
    """Invariant: every correct sample verified beside a hog passes (HumanEval/75's canonical
    solution, the heaviest: ~0.13 s of CPU, under a 1 s limit), and the hog itself is a timeout
    whose CPU, counted over all its processes, reached its CPU limit: final, no confirmation."""
    correct = [problems[75]] * 24

    async def body() -> tuple[Outcome, list[Outcome]]:
        async with SandboxPool(workers=default_workers()) as pool:
            verifier = Verifier(
                pool, problems, programs=TASKS["humaneval"], dedup=False, timing=Timing(timeout_s=1.0)
            )
            await verifier.preflight()
            hog = asyncio.ensure_future(pool.run(HOG, limits=Limits(timeout_s=8.0, cpu_time_s=1.0)))
            await asyncio.sleep(0.3)  # the hog is spinning before its neighbours start
            neighbours = await asyncio.gather(
                *(verifier.verify(p, p.payload["canonical_solution"] or "") for p in correct)
            )
            return await hog, neighbours

    hog, neighbours = uvloop.run(body())
    assert [(o.verdict, o.detail) for o in neighbours if not o.passed] == []
    # Its own process used no CPU, yet the CPU of all its processes passed its limit: final.
    assert (hog.verdict, hog.load_sensitive) == (Verdict.timeout, False) and hog.cpu_s >= 1.0, (
        hog.detail,
        hog.cpu_s,
    )


# Memory no rlimit sees: neither is mapped (RLIMIT_AS), each file stays under RLIMIT_FSIZE.
MEMFD_FILL = """
import os
fds, block = [], b"x" * (1 << 20)
for _ in range(60):  # 60 x 15 MB, above the jail's memory cap
    fd = os.memfd_create("fill")
    for _ in range(15):
        os.write(fd, block)
    fds.append(fd)
"""
TMPFS_FILL = """
block = b"x" * (1 << 20)
for n in range(60):  # page cache of the sample's own tmpfs, charged to the jail
    with open(f"/tmp/fill{n}", "wb") as sink:
        for _ in range(15):
            sink.write(block)
"""


@pytest.mark.parametrize("backend", ["nsjail", "firejail"])
@pytest.mark.parametrize("program", [MEMFD_FILL, TMPFS_FILL], ids=["memfd", "tmpfs"])
def test_memory_outside_rlimits_is_oom_and_the_fork_server_survives(program: str, backend: str) -> None:
    """Invariant: the sample gets `oom`; the worker that ran it is the same process afterwards
    and passes the next sample."""
    limits = Limits(memory_mb=256, timeout_s=30, tmp_mb=4096)

    async def body() -> tuple[Outcome, Outcome, list[int], list[int]]:
        async with SandboxPool(workers=1, limits=limits, backend=backend) as pool:
            before = pool.backend.worker_pids()
            filled = await pool.run(program)
            after = pool.backend.worker_pids()
            return filled, await pool.run("pass"), before, after

    filled, next_one, before, after = uvloop.run(body())
    assert filled.verdict is Verdict.oom, f"{filled.verdict.value}: {filled.detail}"
    assert next_one.verdict is Verdict.passed and before == after
