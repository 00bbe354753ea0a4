"""Verification of untrusted Python in nsjail, with a worker pool for asyncio.

    from sandbox import SandboxPool, Limits, Outcome, Verdict, humaneval_program

    program = humaneval_program(prompt, completion, test, entry_point)
    async with SandboxPool(workers=2, limits=Limits()) as pool:
        outcome: Outcome = await pool.run(program)

Modules: limits (Limits), verdicts (Verdict, Outcome, the decision table), pool (SandboxPool),
workers (the fork-server backend, engine side: nsjail, firejail or none), server (the
fork-server inside each jail), nsjail and firejail (their command lines), seccomp (the
per-program filter), protocol (the child's status records), capture (bounded output), cgroups (a
CPU share, a memory cap and CPU accounting per jail; leftovers of killed runs), program (humaneval_program), verifier (dedup, calibrated limits,
preflight).
"""

from sandbox.limits import Limits
from sandbox.pool import SandboxPool
from sandbox.program import humaneval_program
from sandbox.verdicts import Outcome, Verdict

__all__ = ["Limits", "Outcome", "SandboxPool", "Verdict", "humaneval_program"]
