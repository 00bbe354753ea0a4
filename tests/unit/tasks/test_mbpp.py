"""engine/tasks/mbpp.py: rows, the function's name, the prompt, programs with and without guards,
and the preflight controls, on the fixture (tests/fixtures/tasks/mbpp.jsonl) and generated rows."""

from __future__ import annotations

import json
import keyword
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import DatasetError
from engine.tasks import TASKS, detect, load_dataset, mbpp
from sandbox.forkserver.guards import guard_split

FIXTURE = Path(__file__).parents[2] / "fixtures" / "tasks" / "mbpp.jsonl"
MBPP = TASKS["mbpp"]
identifier = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n) and n not in dir(__builtins__) and n not in ("check", "candidate")
)


def run(program: str) -> None:
    exec(compile(program, "<program>", "exec"), {})


def test_the_fixture_is_detected_as_mbpp_and_every_reference_passes_its_asserts():
    dataset = load_dataset(str(FIXTURE))
    assert dataset.task is MBPP and len(dataset.problems) == 6
    assert [p.task_id for p in dataset.problems][:2] == ["2", "3"]  # MBPP's integer ids, as strings
    for problem in dataset.problems:
        run(MBPP.program(problem, MBPP.reference(problem) or "", guards=False))


def test_the_fixture_rows_of_both_mbpp_spellings_keep_their_fields():
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    by_id = {p.task_id: p for p in load_dataset(str(FIXTURE)).problems}
    sanitized = next(r for r in rows if "prompt" in r and "text" not in r)  # sanitized MBPP's spelling
    assert by_id[str(sanitized["task_id"])].payload["text"] == sanitized["prompt"]
    with_setup = next(r for r in rows if r.get("test_setup_code"))
    assert by_id[str(with_setup["task_id"])].payload["test_setup_code"] == with_setup["test_setup_code"]
    assert by_id["3"].payload["challenge_test_list"] == ["assert is_not_prime(1) == True"]


@pytest.mark.parametrize(
    ("tests", "code", "name"),
    [
        (["assert f(1) == 2"], "def f(x):\n    return x + 1", "f"),
        (["assert set(g((1,), (1,))) == set((1,))"], "def g(a, b): ...", "g"),  # builtins around it
        (["assert math.isclose(area(2), 12.56, rel_tol=0.01)"], None, "area"),  # no reference
        (["assert main(3) == 1"], "def helper(x): ...\ndef main(x): ...", "main"),  # a helper first
        (["assert len(pairs([1])) == 0", "assert pairs([]) == []"], "def pairs(xs): ...", "pairs"),
        (["assert 1 == 1"], None, None),  # nothing called
        (["assert (("], "def f(): ...", None),  # not Python: nothing found, no exception
    ],
)
def test_the_function_name_comes_from_the_asserts_and_the_reference(tests, code, name):
    assert mbpp.function_name(tests, code) == name


@given(name=identifier, first=st.integers(), others=st.lists(st.integers(), max_size=3))
def test_the_prompt_is_the_description_and_the_first_test(name, first, others):
    tests = [f"assert {name}({v}) == {v}" for v in [first, *others]]
    problem = mbpp.problem("M/1", "Return x.", tests, f"def {name}(x):\n    return x")
    assert problem.prompt == f'"""\nReturn x.\n{tests[0]}\n"""\n'
    assert problem.payload["entry_point"] == name
    assert "Your code should pass this test" in MBPP.chat_messages(problem, "")[0]["content"]


@given(name=identifier, count=st.integers(1, 4), setup=st.sampled_from(["", "import math", "X = 1"]))
def test_guarded_programs_split_into_candidate_and_asserts_and_both_forms_judge_alike(name, count, setup):
    # Invariant: guarded, the fork-server finds setup + completion as the candidate and every
    # assert in the test; run plainly, both forms pass the reference and fail a wrong answer.
    tests = [f"assert {name}({i}) == {i}" for i in range(count)]
    problem = mbpp.problem("M/1", "Return x.", tests, f"def {name}(x):\n    return x", setup)
    right, wrong = f"def {name}(x):\n    return x\n", f"def {name}(x):\n    return -1\n"
    candidate, test, entry = guard_split(MBPP.program(problem, right, guards=True)) or ("", "", "")
    assert candidate == (setup + "\n" if setup else "") + right and entry == name
    assert all(t in test for t in tests)
    for guards in (False, True):
        run(MBPP.program(problem, right, guards=guards))
        with pytest.raises(AssertionError):
            run(MBPP.program(problem, wrong, guards=guards))


def test_known_bad_controls_fail_when_run_plainly_and_grow_under_guards():
    problem = load_dataset(str(FIXTURE)).problems[3]  # square_perimeter: asserts compare with ==
    plain, guarded = MBPP.known_bad(problem, guards=False), MBPP.known_bad(problem, guards=True)
    assert set(plain) < set(guarded)
    with pytest.raises(AssertionError):
        run(MBPP.program(problem, plain["raises"], guards=False))
    run(MBPP.program(problem, guarded["returns an object equal to everything"], guards=False))  # why guards


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"task_id": 1, "code": "", "test_list": ["assert f(1)"]}, "row 1 lacks text"),
        ({"task_id": 1, "text": "t", "code": "", "test_list": []}, "test_list must be a non-empty list"),
        ({"task_id": 1, "text": "t", "code": "", "test_list": [3]}, "test_list must be a non-empty list"),
        ({"task_id": "", "text": "t", "code": "", "test_list": ["assert f(1)"]}, "row 1 lacks task_id"),
        ({"task_id": 1, "text": "t", "code": "", "test_list": ["assert 1"]}, "call no function"),
    ],
)
def test_bad_rows_are_one_line_errors_naming_the_row(row, message):
    assert detect([row]) == "mbpp"
    with pytest.raises(DatasetError, match=message):
        MBPP.problems([row], "d.jsonl")


def test_the_fingerprint_follows_the_asserts():
    a = mbpp.problem("M/1", "t", ["assert f(1) == 1"], "def f(x): return x")
    b = mbpp.problem("M/1", "t", ["assert f(1) == 1", "assert f(2) == 2"], "def f(x): return x")
    assert MBPP.fingerprint("d", [a]) != MBPP.fingerprint("d", [b]) == MBPP.fingerprint("d", [b])
    assert MBPP.stop and "\ndef" not in MBPP.stop  # a whole function may define helpers
