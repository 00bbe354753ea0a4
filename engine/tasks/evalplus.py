"""EvalPlus-style problems (HumanEval+, MBPP+): a function called on base and plus inputs, its
return values compared with the reference solution's.

Rows (HumanEval+'s shape): task_id, prompt, canonical_solution, entry_point, base_input and
plus_input (lists of argument lists), optionally atol (default 0) and test (unused here). The
program is the call driver (engine/tasks/driver.py) running prompt + completion on base_input +
plus_input, each call with a CPU limit of 4 s (EvalPlus' minimum per-input limit).

Expected outputs are the reference solution's return values, computed in the sandbox by
`Evalplus.prepare` before any sample is judged (engine.tasks.prepare, before preflight), and
cached on disk per dataset content (~/.cache/engine/expected/evalplus-<hash>.json, written
atomically: a resume or a second run reads them back). They never enter the jail of a sample.

Judging follows EvalPlus' `unsafe_execute` (engine/tasks/compare.py: `==`, then atol/1e-6 for
floats; special oracles below). `passed` is the plus suite (base + plus inputs); `base_passed`
the base suite alone. Fail fast by default; `Evalplus(run_all=True)` runs every input.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.records import Problem
from engine.tasks import rows as R
from engine.tasks.base import Judgement
from engine.tasks.chat import code_from_answer, fenced_messages
from engine.tasks.compare import Malformed, decode, values_match
from engine.tasks.judging import TestRecord, already_judged, judge_report, read_report
from engine.tasks.programs import REPORT_BYTES, call_program
from sandbox.pool import SandboxPool
from sandbox.verdicts import Outcome, Verdict

log = logging.getLogger(__name__)

NAME = "evalplus"
FIELDS = frozenset(("task_id", "prompt", "canonical_solution", "entry_point", "base_input", "plus_input"))
TEST_S = 4.0
STOP = ("\ndef", "\nclass", "\nif", "\nprint", "\n#")
SYSTEM_PROMPT = (
    "You are an expert Python programmer. Complete the Python function the user gives you. "
    "Answer with the whole function, including its signature, in one ```python code block."
)
KNOWN_BAD = {
    "raises": "    raise AssertionError('preflight: a known-bad completion')\n",
    "exits 0 at once": "    import os\n    os._exit(0)\n",
    "returns an object equal to everything": "    class Anything:\n        __eq__ = lambda self, other: True\n"
    "    return Anything()\n",
}
REFERENCE_OUTPUT_BYTES = (
    16 * 1024 * 1024
)  # the reference's report: every value whole (the worker reads < 64 MiB)
REFERENCE_TIMEOUT_S = 120.0  # the reference's whole run, every input
# EvalPlus' special oracles (evalplus/eval/_special_oracle.py), by entry point.
MBPP_SET_EQ = frozenset(
    ("similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum")
    + ("intersection_array", "find_dissimilar", "Diff")
)
MBPP_NOT_NONE = frozenset(("check_str", "text_match_three", "text_starta_endb"))


def default_cache_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".cache" / "engine" / "expected"


class Evalplus(R.DriverKind):
    name = NAME
    fields = FIELDS
    stop = STOP
    system_prompt = SYSTEM_PROMPT
    report_bytes = REPORT_BYTES  # the driver's report: the sandbox keeps this much output

    def __init__(self, run_all: bool = False, cache_dir: Path | None = None):
        self.run_all = run_all
        self.cache_dir = cache_dir
        self._expected: dict[str, list[TestRecord | None]] = {}  # by problem_key: a memo of a pure function

    def _problem(self, row: Mapping[str, Any]) -> Problem:
        base = R.argument_lists(R.parsed(row, "base_input"), "base_input")
        plus = R.argument_lists(R.parsed(row, "plus_input") or [], "plus_input")
        if not base:
            raise R.RowError("base_input is empty")
        atol = row.get("atol") or 0
        if isinstance(atol, bool) or not isinstance(atol, (int, float)) or atol < 0:
            raise R.RowError(f"atol must be a number, not {atol!r}")
        payload = {
            "entry_point": R.text(row, "entry_point"),
            "canonical_solution": R.text(row, "canonical_solution"),
            "inputs": base + plus,
            "base_count": len(base),
            "atol": float(atol),
        }
        return Problem(R.text(row, "task_id"), R.text(row, "prompt"), NAME, payload)

    def fingerprint(self, source: str, problems: Sequence[Problem]) -> str:
        return R.fingerprint(source, problems)

    def chat_messages(self, problem: Problem, system_prompt: str) -> list[dict[str, str]]:
        return fenced_messages(system_prompt, problem.prompt)

    def extract(self, problem: Problem, answer: str) -> str:
        code = code_from_answer(answer)
        return "\n" + code if f"def {problem.payload['entry_point']}" in code else code

    def _program(self, problem: Problem, completion: str, *, inputs: bool) -> str:
        p = problem.payload
        given = p["inputs"] if inputs else None
        return call_program(
            problem.prompt + completion, p["entry_point"], given, TEST_S, run_all=self.run_all
        )

    def reference(self, problem: Problem) -> str | None:
        return problem.payload["canonical_solution"]

    def known_bad(self, problem: Problem, *, guards: bool) -> Mapping[str, str]:
        return KNOWN_BAD

    # -- expected outputs ---------------------------------------------------------------------

    async def prepare(self, problems: Sequence[Problem], pool: SandboxPool) -> list[str]:
        """Compute in `pool` (or read back from the cache) every problem's expected outputs. The
        ids of problems whose reference fails some input (flagged: those inputs never pass)."""
        fingerprint = hashlib.sha256("".join(sorted(map(problem_key, problems))).encode()).hexdigest()[:24]
        cached = self._read_cache(fingerprint)
        unique = {problem_key(p): p for p in problems}
        todo = [p for key, p in unique.items() if key not in self._expected and key not in cached]
        outcomes = await asyncio.gather(*(self._run_reference(p, pool) for p in todo))
        for problem, outcome in zip(todo, outcomes):
            cached[problem_key(problem)] = _reference_records(outcome, len(problem.payload["inputs"]))
        if todo:
            self._write_cache(fingerprint, cached)
        for key, records in cached.items():
            self._expected[key] = [None if r is None else TestRecord(**r) for r in records]
        broken = [p.task_id for key, p in unique.items() if None in self._expected[key]]
        if broken:
            log.warning(
                "evalplus: the reference fails some inputs of %d problems (%s)",
                len(broken),
                ", ".join(broken[:5]),
            )
        return broken

    async def _run_reference(self, problem: Problem, pool: SandboxPool) -> Outcome:
        p = problem.payload
        code = problem.prompt + p["canonical_solution"]
        program = call_program(
            code, p["entry_point"], p["inputs"], TEST_S, run_all=True, budget=REFERENCE_OUTPUT_BYTES
        )
        seconds = max(pool.limits.timeout_s, REFERENCE_TIMEOUT_S)
        limits = replace(
            pool.limits, timeout_s=seconds, cpu_time_s=seconds, max_output_bytes=REFERENCE_OUTPUT_BYTES
        )
        return await pool.run(program, limits=limits, label=f"expected:{problem.task_id}")

    def _cache_path(self, fingerprint: str) -> Path:
        return (self.cache_dir or default_cache_dir()) / f"evalplus-{fingerprint}.json"

    def _read_cache(self, fingerprint: str) -> dict[str, list[dict | None]]:
        try:
            data = json.loads(self._cache_path(fingerprint).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_cache(self, fingerprint: str, data: dict[str, list[dict | None]]) -> None:
        path = self._cache_path(fingerprint)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            partial.write_text(json.dumps(data), encoding="utf-8")
            os.replace(partial, path)  # atomic: a crash never leaves a truncated cache
        except OSError as exc:
            log.warning("evalplus: cannot cache expected outputs in %s: %s", path, exc)

    # -- judging ------------------------------------------------------------------------------

    def judge(self, problem: Problem, outcome: Outcome) -> Judgement:
        if (judged := already_judged(outcome)) is not None:
            return judged
        expected = self._expected.get(problem_key(problem))
        if expected is None:
            raise RuntimeError(
                f"evalplus: expected outputs of {problem.task_id} not prepared (Evalplus.prepare)"
            )
        p = problem.payload
        special = oracle(problem)

        def match(index: int, record: TestRecord) -> bool:
            want = expected[index]
            return want is not None and _matches(record, want, p["atol"], special, p["inputs"][index])

        judgement = judge_report(outcome, len(expected), match)
        return replace(judgement, base_passed=_base_passed(judgement, outcome, p["base_count"], match))


def problem_key(problem: Problem) -> str:
    """What the expected outputs depend on: the reference and the inputs."""
    p = problem.payload
    blob = json.dumps(
        [problem.task_id, problem.prompt, p["canonical_solution"], p["entry_point"], p["inputs"]]
    )
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def _reference_records(outcome: Outcome, total: int) -> list[dict | None]:
    report = read_report(outcome.output)
    records: list[dict | None] = []
    for index in range(total):
        r = report.records.get(index)
        ok = r is not None and r.status == "ok" and outcome.verdict is Verdict.passed
        records.append(
            {"index": index, "status": "ok", "digest": r.digest, "text": r.text} if ok and r else None
        )
    return records


def _base_passed(
    judgement: Judgement, outcome: Outcome, base_count: int, match: Callable[[int, TestRecord], bool]
) -> bool:
    """The base inputs (the first `base_count`) all answered and matched."""
    if judgement.passed:
        return True
    records = read_report(outcome.output).records
    return all(
        (r := records.get(i)) is not None and r.status == "ok" and match(i, r) for i in range(base_count)
    )


Special = Callable[[Any, Any, list[Any], float], bool | None]


def _matches(
    record: TestRecord, want: TestRecord, atol: float, special: Special | None, args: list[Any]
) -> bool:
    if record.text is None or want.text is None:  # too large for the report: exact, by digest
        return record.digest is not None and record.digest == want.digest
    try:
        got, exp = decode(json.loads(record.text)), decode(json.loads(want.text))
    except (ValueError, Malformed, RecursionError):
        return False
    if special is not None and (verdict := special(got, exp, args, atol)) is not None:
        return verdict
    return values_match(got, exp, atol)


def oracle(problem: Problem) -> Special | None:
    """EvalPlus' special oracle of a problem, if it has one: it decides (True/False), or says
    nothing (None) and the usual rule applies."""
    name, mbpp = problem.payload["entry_point"], problem.task_id.startswith("Mbpp/")
    if not mbpp and name == "find_zero":
        return _find_zero
    if mbpp and name == "are_equivalent":
        return lambda got, exp, args, atol: True
    if mbpp and name == "sum_div":
        return lambda got, exp, args, atol: True if got == exp or got == 0 else None
    if mbpp and name == "surface_Area":
        return _surface_area
    if mbpp and name == "digit_distance_nums":
        return _digit_distance
    if mbpp and name in MBPP_SET_EQ:
        return _set_equal
    if mbpp and name in MBPP_NOT_NONE:
        return lambda got, exp, args, atol: got == exp if isinstance(got, bool) else exp == (got is not None)
    return None


def _find_zero(got: Any, exp: Any, args: list[Any], atol: float) -> bool:
    """HumanEval/32: any root will do: |poly(xs, x)| <= atol."""
    if type(got) not in (int, float) or not args or not isinstance(args[0], list):
        return False
    try:
        return abs(sum(c * got**i for i, c in enumerate(args[0]))) <= atol
    except (OverflowError, TypeError):
        return False


def _set_equal(got: Any, exp: Any, args: list[Any], atol: float) -> bool:
    try:
        return set(got) == set(exp)
    except TypeError:
        return False


def _surface_area(got: Any, exp: Any, args: list[Any], atol: float) -> bool | None:
    """Mbpp/581: also right, the area with `height` read as the pyramid's perpendicular height
    (rounded, as EvalPlus' oracle); otherwise the usual rule decides."""
    try:
        base_edge, height = args
        slant = math.sqrt((base_edge / 2) ** 2 + height**2)
        return (
            True
            if got == exp or abs(got - round(base_edge**2 + 4 * (base_edge * slant) / 2)) <= atol
            else None
        )
    except (TypeError, ValueError, OverflowError):
        return None


def _digit_distance(got: Any, exp: Any, args: list[Any], atol: float) -> bool | None:
    """Mbpp/558: also right, the digit distance with the shorter number padded with zeros (EvalPlus'
    oracle); otherwise the usual rule decides."""
    try:
        a, b = (str(n) for n in args)
        width = max(len(a), len(b))
        distance = sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width), strict=True))
    except (TypeError, ValueError):
        return None
    return True if got == exp or got == distance else None
