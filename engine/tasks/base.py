"""The task seam: what a problem is, and how a completion becomes a program and a verdict.

A task kind (HumanEval, MBPP-style assert lists, EvalPlus-style inputs, stdin/stdout problems,
call-based problems) is one object that satisfies `Task`. The engine's core (sweep, store,
sandbox, metrics) knows problems only as `Problem` records and reaches everything kind-specific
through the `Task` of the run:

    rows = read_rows(path)                      # engine.tasks: local file or hub name
    task = TASKS[detect(rows)]                  # or the one named with --task
    problems = task.problems(rows, source)      # DatasetError (one line) on a bad row
    prompt = problem.prompt                     # /v1/completions; task.chat_messages() for chat
    program = task.program(problem, completion, guards=True)
    outcome = await pool.run(program, ...)      # the sandbox runs it: an Outcome
    judgement = task.judge(problem, outcome)    # what is stored and counted

Problem data (optional): a kind whose tests are the same for every sample (the inputs of EvalPlus,
stdin/stdout and call-based problems) has `data(problem) -> bytes | None` and
`program_with_data(problem, completion, *, guards)`, the program that reads those bytes instead
of carrying them; the sandbox sends them to each jail once per problem, not once per sample
(sandbox/verifier.py picks; a pool that cannot take data gets the self-contained `program`).

Where a kind compares outputs (EvalPlus, stdin/stdout, call-based), the candidate's process only
produces values; `judge` compares them outside it, so nothing the candidate does can change the
comparison.

One optional async hook, not part of the protocol (the Verifier looks it up with getattr): a kind
whose judging needs a program of its own, run in the sandbox after the candidate's (stdin/stdout
problems with a checker: engine/tasks/checker.py), defines

    async def check(self, problem, outcome, run) -> Judgement | None
        # run(program, wall_s) -> Outcome: one more sandbox run (infrastructure faults retried)

returning None when the problem has nothing to check (then `judge` decides). The Verifier calls
it before `judge` (in preflight too), and stores and reuses the checked judgement; `judge` must
then give it back unchanged (the outcome carries tests_total).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.records import Problem
from sandbox.verdicts import Outcome, Verdict

__all__ = ["Judgement", "Problem", "Task", "judged_by_sandbox"]


@dataclass(frozen=True, slots=True)
class Judgement:
    """What a sample's outcome means for its problem: the verdict stored and counted (one of the
    five, or infra_error), and for kinds with several tests, how many passed (an RL reward).
    `base_passed`: EvalPlus-style kinds only, the base suite alone (`passed` is base + plus)."""

    verdict: Verdict
    detail: str = ""
    tests_passed: int | None = None
    tests_total: int | None = None
    base_passed: bool | None = None

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.passed


class Task(Protocol):
    """One task kind. Implementations are stateless (one instance per kind, in the registry) and
    keep every kind-specific name to themselves."""

    @property
    def name(self) -> str:
        """The kind's name: `--task NAME`, the store's and exports' `task_kind`."""
        ...

    @property
    def fields(self) -> frozenset[str]:
        """Dataset fields a row must have to be of this kind (detect() picks, among the kinds
        whose fields a dataset has, the one that asks for the most: the most specific)."""
        ...

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop sequences for /v1/completions (chat answers are not cut: the code is taken out
        of the answer by `extract`)."""
        ...

    @property
    def system_prompt(self) -> str:
        """The system prompt of `--api chat` when none is given."""
        ...

    def problems(self, rows: Sequence[Mapping[str, Any]], source: str) -> list[Problem]:
        """The dataset's rows as Problems, in order. DatasetError naming `source` and the row
        (1-based) when a row lacks what the kind needs."""
        ...

    def fingerprint(self, source: str, problems: Sequence[Problem]) -> str:
        """A short id of the dataset's content, `source@hash`: runs resume, caches (e.g. expected
        outputs) and provenance key on it, so it changes when anything judged changes."""
        ...

    def chat_messages(self, problem: Problem, system_prompt: str) -> list[dict[str, str]]:
        """The prompt in chat form (/v1/chat/completions)."""
        ...

    def extract(self, problem: Problem, answer: str) -> str:
        """The completion taken out of a chat answer (the same shape a base model's completion
        of `problem.prompt` has, so that `program` treats both alike)."""
        ...

    def program(self, problem: Problem, completion: str, *, guards: bool) -> str:
        """The Python program the jail runs for one sample. With `guards`, it is built in the
        form the fork-server runs guarded (sandbox/program.py); without, exactly as the kind's
        reference harness builds it, so verdicts are comparable with published ones."""
        ...

    def reference(self, problem: Problem) -> str | None:
        """A completion known to be right (preflight proves the sandbox passes it, and its time
        calibrates the problem's limits); None when the dataset has none."""
        ...

    def known_bad(self, problem: Problem, *, guards: bool) -> Mapping[str, str]:
        """Completions known to be wrong, by a one-line description: preflight refuses to start
        unless every one fails. With `guards`, add the ones only the guards catch."""
        ...

    def judge(self, problem: Problem, outcome: Outcome) -> Judgement:
        """The verdict of one run of `program`. Kinds whose program runs its own checks (HumanEval,
        MBPP asserts) take the sandbox's verdict; kinds that compare outputs do it here."""
        ...


def judged_by_sandbox(outcome: Outcome) -> Judgement:
    """The judgement of a kind whose program runs its own checks: the sandbox's verdict."""
    return Judgement(outcome.verdict, outcome.detail)
