"""Verdict fidelity: on the fixtures, each kind's verdicts agree with its format's reference
evaluator, written here as small independent functions.

Candidate code runs only in the sandbox (nsjail). What is independent is the comparison: the
outputs the driver reported (stdout, or the tagged return values) are decoded and compared here
by the reference rule, and every test's outcome must match the engine's judgement (run with
every test, so tests_passed counts them all). For MBPP the reference is the plain program of
MBPP's harness (setup + code + asserts, unguarded), run to its end in the sandbox.

Intended differences (listed in the README's task-kinds section) are named where they apply:
each test asserts that they explain exactly the disagreements, and no others.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import uvloop
from stdout_reference import lcb_matches, our_matches
from test_task_kinds_e2e import CALL, EVALPLUS, STDIO

from engine.records import Problem
from engine.tasks import Task, load_dataset
from engine.tasks.base import Judgement
from engine.tasks.call import Call
from engine.tasks.evalplus import Evalplus
from engine.tasks.hooks import prepare
from engine.tasks.judging import read_report
from engine.tasks.stdio import Stdio
from sandbox import Limits, Outcome, SandboxPool, Verdict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
LIMITS = Limits(timeout_s=5.0, cpu_time_s=5.0)  # MBPP's "never returns" sample runs to it


def problems_of(kind: str) -> dict[str, Problem]:
    return {p.task_id: p for p in load_dataset(str(FIXTURES / f"{kind}.jsonl")).problems}


def run_in_sandbox(task: Task, jobs: Sequence[tuple[Problem, str]], limits: Limits = LIMITS) -> list[Outcome]:
    """Each (problem, completion) as the kind's program, in one nsjail pool."""

    async def body() -> list[Outcome]:
        async with SandboxPool(workers=2, limits=limits, backend="nsjail") as pool:
            await prepare(task, {id(p): p for p, _ in jobs}.values(), pool)
            room = replace(
                limits, max_output_bytes=max(limits.max_output_bytes, getattr(task, "report_bytes", 0))
            )
            runs = [pool.run(task.program(p, c, guards=limits.guards), limits=room) for p, c in jobs]
            return list(await asyncio.gather(*runs))

    return uvloop.run(body())


def run_plain(programs: Sequence[str]) -> list[Outcome]:
    async def body() -> list[Outcome]:
        limits = replace(LIMITS, guards=False)
        async with SandboxPool(workers=2, limits=limits, backend="nsjail") as pool:
            return list(await asyncio.gather(*(pool.run(program, limits=limits) for program in programs)))

    return uvloop.run(body())


def reported(outcome: Outcome, total: int) -> list[str | None]:
    """Each test's reported output (None: it did not run to an output)."""
    records = read_report(outcome.output).records
    return [records[i].text if i in records and records[i].status == "ok" else None for i in range(total)]


def assert_agrees(judgement: Judgement, matches: list[bool]) -> None:
    """The engine's judgement, run on every test, against the reference rule's per-test matches."""
    assert judgement.tests_total == len(matches)
    assert judgement.tests_passed == sum(matches), judgement
    assert (judgement.verdict is Verdict.passed) == all(matches), judgement


# -- stdin/stdout: LiveCodeBench's grade_stdio ------------------------------------------------


# Where LiveCodeBench fails and we pass, on purpose (README, "stdout rule")
# (a float within the tolerance of an integer answer passes: only two integers are exact)
STDIO_INTENDED = {"full float within tolerance", "words split by two spaces", "a float for an integer"}
EXTRA_STDIO = {
    "words split by two spaces": (
        "reverse-lines",
        "import sys\nfor line in reversed(sys.stdin.read().splitlines()):\n    print('  '.join(line.split()))\n",
    ),
    "a float for an integer": ("sum-of-two", "a, b = map(int, input().split())\nprint(a + b + 1e-9)\n"),
    "one answer line too many": ("sum-of-two", "a, b = map(int, input().split())\nprint(a + b)\nprint(0)\n"),
}


def test_stdio_verdicts_follow_livecodebench() -> None:
    problems = problems_of("stdio")
    table = {name: (t, c) for name, (t, c, _) in STDIO.items()} | EXTRA_STDIO
    cases = {name: (problems[t], c) for name, (t, c) in table.items()}
    cases |= {f"reference of {p.task_id}": (p, Stdio().reference(p) or "") for p in problems.values()}
    task = Stdio(run_all=True)
    outcomes = run_in_sandbox(task, list(cases.values()))
    intended = set()
    for (name, (problem, _)), outcome in zip(cases.items(), outcomes):
        expected, tolerance = problem.payload["outputs"], problem.payload["tolerance"]
        outputs = reported(outcome, len(expected))
        ours = [o is not None and our_matches(o, e, tolerance) for o, e in zip(outputs, expected)]
        theirs = [o is not None and lcb_matches(o, e) for o, e in zip(outputs, expected)]
        assert_agrees(task.judge(problem, outcome), ours)
        if ours != theirs:
            intended.add(name)
    assert intended == STDIO_INTENDED


# -- call-based: APPS / LiveCodeBench functional ------------------------------------------------


def untag(data: list) -> Any:
    """The driver's type-tagged value (engine/tasks/driver.py: encode), decoded independently."""
    tag, *body = data
    if tag == "N":
        return None
    (item,) = body
    atoms = {"b": lambda x: x, "s": lambda x: x, "i": lambda x: int(x, 16), "f": float}
    if tag in atoms:
        return atoms[tag](item)
    sequences = {"l": list, "t": tuple, "e": set, "z": frozenset}
    if tag in sequences:
        return sequences[tag](untag(x) for x in item)
    assert tag == "d", tag
    return {untag(k): untag(v) for k, v in item}


MISSING = object()


def decoded(output: str | None) -> Any:
    return MISSING if output is None else untag(json.loads(output))


def json_normalised(value: Any) -> Any:
    """The value as JSON carries it (tuples become lists); a value JSON cannot carry is itself."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return value


def call_matches(value: Any, expected: Any) -> bool:
    """Our rule: equal as JSON values, or equal to the only element of a one-element list."""
    got = json_normalised(value)
    return got == expected or (isinstance(expected, list) and len(expected) == 1 and got == expected[0])


def apps_matches(value: Any, expected: Any) -> bool:
    """APPS' testing_util: a returned tuple becomes a list; equal, or equal to the first element
    of any non-empty expected list."""
    got = list(value) if isinstance(value, tuple) else value
    return got == expected or (isinstance(expected, list) and bool(expected) and got == expected[0])


# Where APPS passes and we fail, on purpose (README, "Verdict fidelity")
CALL_INTENDED = {"only the first element of the pair"}
EXTRA_CALL = {
    "a set for the pair": ("call/min-max", "return {min(xs), max(xs)}\n"),
    "floats for ints": ("call/min-max", "return [float(min(xs)), float(max(xs))]\n"),
    "a tuple of indices": ("call/two-sum", "return (0, 1) if nums[0] + nums[1] == target else (1, 2)\n"),
    "only the first element of the pair": ("call/min-max", "return min(xs)\n"),
}


def test_call_verdicts_follow_apps() -> None:
    problems = problems_of("call")
    table = {name: (t, c) for name, (t, c, _) in CALL.items()} | EXTRA_CALL
    cases = {name: (problems[t], c) for name, (t, c) in table.items()}
    task = Call(run_all=True)
    intended = set()
    for (name, (problem, _)), outcome in zip(cases.items(), run_in_sandbox(task, list(cases.values()))):
        expected = problem.payload["outputs"]
        values = [decoded(o) for o in reported(outcome, len(expected))]
        ours = [v is not MISSING and call_matches(v, e) for v, e in zip(values, expected)]
        theirs = [v is not MISSING and apps_matches(v, e) for v, e in zip(values, expected)]
        assert_agrees(task.judge(problem, outcome), ours)
        if ours != theirs:
            intended.add(name)
    assert intended == CALL_INTENDED


# -- EvalPlus: unsafe_execute's comparison --------------------------------------------------------


def is_floats(x: Any) -> bool:
    return isinstance(x, float) or (
        isinstance(x, (list, tuple)) and bool(x) and all(isinstance(i, float) for i in x)
    )


def allclose(out: Any, exp: Any, atol: float, rtol: float = 1e-7) -> bool:
    if isinstance(exp, (list, tuple)):
        return (
            isinstance(out, (list, tuple))
            and len(out) == len(exp)
            and all(allclose(a, b, atol) for a, b in zip(out, exp))
        )
    numbers = all(isinstance(v, (int, float)) for v in (out, exp))
    return numbers and abs(out - exp) <= atol + rtol * abs(exp)


def poly(xs: list, x: float) -> float:
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def evalplus_details(
    outs: list[Any], exps: list[Any], inputs: list[list], atol: float, entry: str
) -> list[bool]:
    """EvalPlus' loop, literally: the atol promotion for floats persists over later inputs."""
    details = []
    for out, exp, inp in zip(outs, exps, inputs):
        if entry == "find_zero":
            details.append(isinstance(out, (int, float)) and abs(poly(inp[0], out)) <= atol)
            continue
        exact = out == exp
        if atol == 0 and is_floats(exp):
            atol = 1e-6
        if not exact and atol != 0:
            details.append(type(out) is type(exp) and allclose(out, exp, atol))
        else:
            details.append(exact)
    return details


def test_evalplus_verdicts_follow_evalplus(tmp_path: Path) -> None:
    problems = problems_of("evalplus")
    cases = [(problems[t], c) for t, c, _ in EVALPLUS.values()]
    references = [(p, p.payload["canonical_solution"]) for p in problems.values()]
    task = Evalplus(run_all=True, cache_dir=tmp_path)
    outcomes = run_in_sandbox(task, references + cases)
    expected = {}
    for (problem, _), outcome in zip(references, outcomes):
        inputs = problem.payload["inputs"]
        expected[problem.task_id] = [decoded(o) for o in reported(outcome, len(inputs))]
    for (problem, _), outcome in zip(references + cases, outcomes):
        inputs, payload = problem.payload["inputs"], problem.payload
        outs = [decoded(o) for o in reported(outcome, len(inputs))]
        details = evalplus_details(
            outs, expected[problem.task_id], inputs, payload["atol"], payload["entry_point"]
        )
        assert_agrees(task.judge(problem, outcome), [d and o is not MISSING for d, o in zip(details, outs)])


# -- MBPP: the plain program, run to its end --------------------------------------------------


def mbpp_samples() -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / "mbpp_samples.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("guards", [False, True])
def test_mbpp_verdicts_follow_the_plain_program(guards: bool) -> None:
    """MBPP's harness: exec(setup + code + asserts) passes iff it runs to its end without an
    exception (a nonce printed last: exiting early is not passing). Under guards the engine
    differs exactly on the always-equal objects the guards stop."""
    loaded = load_dataset(str(FIXTURES / "mbpp.jsonl"))
    problems = {p.task_id: p for p in loaded.problems}
    samples = mbpp_samples()
    nonce = secrets.token_hex(16)
    plain = []
    for s in samples:
        row = problems[s["task_id"]].payload
        asserts = "\n".join(row["test_list"])
        plain.append(f"{row['test_setup_code']}\n{s['completion']}\n{asserts}\nprint({nonce!r})\n")
    reference = [o.verdict is Verdict.passed and o.output.strip().endswith(nonce) for o in run_plain(plain)]
    jobs = [(problems[s["task_id"]], s["completion"]) for s in samples]
    outcomes = run_in_sandbox(loaded.task, jobs, replace(LIMITS, guards=guards))
    ours = [loaded.task.judge(p, o).verdict is Verdict.passed for (p, _), o in zip(jobs, outcomes)]
    differ = {s["why"] for s, a, b in zip(samples, ours, reference) if a != b}
    assert differ == (
        {s["why"] for s in samples if s["expect"] != s["expect_unguarded"]} if guards else set()
    )
