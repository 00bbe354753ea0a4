"""Verification of untrusted Python in nsjail, with a worker pool for asyncio.

    from sandbox import SandboxPool, Limits, Outcome, Verdict, check_program

    program = check_program(candidate, test, entry_point)   # candidate + test + check(entry_point)
    async with SandboxPool(workers=2, limits=Limits()) as pool:
        outcome: Outcome = await pool.run(program)

Modules: limits (Limits), verdicts (Verdict, Outcome, the decision table), pool (SandboxPool),
errors (SandboxError), verifier (dedup, calibrated limits, preflight), program
(check_program: the one program form the fork-server runs guarded), seccomp (the per-program filter), protocol (the child's status records),
capture (bounded output), cgroups (a CPU share, a memory cap and CPU accounting per jail;
leftovers of killed runs).
Folders: forkserver/ (the fork-server: in the jail, server.py and guards.py; engine side,
backend.py and worker.py), launchers/ (how a jail starts: base.py's Launcher protocol and
LAUNCHERS registry; nsjail.py, firejail.py, bare.py for `none`).

The package imports nothing from `engine`: it raises sandbox.errors.SandboxError, which the
engine maps into its own error tree.
"""

from sandbox.errors import SandboxError
from sandbox.limits import Limits
from sandbox.pool import SandboxPool
from sandbox.program import check_program
from sandbox.verdicts import Outcome, Verdict

__all__ = ["Limits", "Outcome", "SandboxError", "SandboxPool", "Verdict", "check_program"]
