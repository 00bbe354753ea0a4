"""What the engine asks of a kind beyond the Task protocol, where a kind needs it (both optional,
so that kinds without them, and the core, stay unchanged)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from engine.records import Problem
from engine.tasks.base import Task
from sandbox.pool import SandboxPool


async def prepare(task: Task, problems: Iterable[Problem], pool: SandboxPool) -> list[str]:
    """Work in the sandbox a kind's judging needs first (EvalPlus: the reference's outputs), before
    preflight; the ids of problems flagged on the way (a reference that fails its own tests)."""
    hook = getattr(task, "prepare", None)
    return await hook(list(problems), pool) if hook is not None else []


def all_tests(task: Task) -> Task:
    """The kind with every test run (the fraction passed, an RL reward), not stopping at the first
    failure; kinds with one check are returned as they are."""
    if not hasattr(task, "run_all"):
        return task
    kind: Callable[..., Task] = type(task)
    return kind(run_all=True)
