"""Bytes written to the jails for one large stdin/stdout problem (200 tests, 1 MB of input),
with its inputs embedded in every sample's program (before) and sent as problem data, once per
jail (after). Short: the candidate fails its first test, so each sample runs one test.

    .venv/bin/python bench/problem_data.py [--samples 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from engine.tasks.programs import inputs_data, stdio_program
from sandbox.forkserver.backend import ForkServerBackend
from sandbox.launchers import LAUNCHERS
from sandbox.limits import Limits
from sandbox.pool import SandboxPool

TESTS, TEST_BYTES = 200, 5 * 1024  # 200 inputs of 5 KiB: 1 MB
CODE = "import sys\nsys.exit(1)\n"


async def written(samples: int, workers: int, as_data: bool) -> tuple[int, float]:
    inputs = [f"{i}\n" + "7 " * (TEST_BYTES // 2 - 2) for i in range(TESTS)]
    data = inputs_data(inputs) if as_data else None
    program = stdio_program(CODE, None if as_data else inputs, 2.0, run_all=False)
    backend = ForkServerBackend(LAUNCHERS["none"](), cgroups=False)
    async with SandboxPool(workers=workers, limits=Limits(timeout_s=10.0), backend=backend) as pool:
        jails = list(backend._workers)
        before = sum(w.bytes_written for w in jails)
        started = time.monotonic()
        await asyncio.gather(*(pool.run(program, data=data) for _ in range(samples)))
        return sum(w.bytes_written for w in jails) - before, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(
        f"{TESTS} tests, {TESTS * TEST_BYTES / 1e6:.2f} MB of input, {args.samples} samples, {args.workers} jails"
    )
    for label, as_data in (("embedded (before)", False), ("problem data (after)", True)):
        sent, wall = asyncio.run(written(args.samples, args.workers, as_data))
        print(
            f"{label:22s} {sent / 1e6:8.2f} MB written to jails ({sent / args.samples / 1e3:8.1f} kB/sample), {wall:.2f} s"
        )


if __name__ == "__main__":
    main()
