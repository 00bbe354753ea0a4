"""What runs on each node of a Ray cluster: one actor owning that node's sandbox pool.

It uses only sandbox/ (a node runs sandboxes, nothing of the engine), is placed and driven by
engine/remote/ray_backend.py, and judges with the limits the engine sends with every program,
so a verdict does not depend on the node that gave it.
"""

from __future__ import annotations

import socket

from sandbox import Limits, Outcome, SandboxError, SandboxPool, Verdict, check_program

# A program that must pass and one that must fail: a node whose sandbox judges wrong (a missing
# jail binary, a broken account) is refused before it is sent any sample.
_SELF_CHECK = {
    Verdict.passed: "    return 1\n",
    Verdict.failed: "    return 2\n",
}


class NodeSandbox:
    """The actor (made remote by ray.remote in the engine): every method is async, so Ray runs
    its calls concurrently, as many as the engine sends; the pool's slots bound the jails."""

    def __init__(self, workers: int, limits: Limits, backend: str):
        self.pool = SandboxPool(workers=workers, limits=limits, backend=backend)

    async def start(self) -> dict:
        """Start the jails and check they judge; {"error": why} instead of raising, so the engine
        gets one line, not a remote traceback."""
        try:
            await self.pool.start()
            await self._self_check()
        except SandboxError as exc:
            await self.pool.close()
            return {"error": str(exc)}
        return {"host": socket.gethostname(), "workers": self.pool.workers, "backend": self.pool.backend.name}

    async def run(self, program: str, limits: Limits, label: str, reserved: bool) -> Outcome:
        return await self.pool.run(program, limits=limits, label=label, reserved=reserved)

    async def close(self) -> None:
        await self.pool.close()

    async def _self_check(self) -> None:
        limits = self.pool.limits
        for expected, completion in _SELF_CHECK.items():
            program = check_program(
                "def f():\n" + completion, "def check(f):\n    assert f() == 1\n", "f", guards=limits.guards
            )
            outcome = await self.pool.run(program, limits=limits, label="node-self-check")
            if outcome.verdict is not expected:
                raise SandboxError(
                    f"self-check on {socket.gethostname()}: a program that must be {expected.value} was"
                    f" judged {outcome.verdict.value} ({outcome.detail})"
                )
