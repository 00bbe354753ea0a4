"""The simulator answers every task kind through the task seam: the kind's reference or a
plausible wrong variant, cut by the kind's own stops, in completion and chat form; a problem
without a reference gets a placeholder that fails. End to end: `engine run` on MBPP's fixture
against `engine simulate` on the same file passes preflight and scores near the configured rate."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tasks import TASKS, chat_messages, extract_completion, load_dataset
from engine.tasks.mbpp import problem as mbpp_problem
from vllm_sim.model import instruct, kinds
from vllm_sim.model.instruct import Message
from vllm_sim.model.kinds import PLACEHOLDER, TRAILERS
from vllm_sim.model.mutations import KINDS, mutants
from vllm_sim.model.synthetic import SyntheticModel

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tasks"
MBPP = FIXTURES / "mbpp.jsonl"
PROBLEMS = load_dataset(str(MBPP)).problems
MODEL = SyntheticModel(PROBLEMS, seed=0)
# Every kind's fixture dataset (files of samples aside): each kind the engine gains is covered.
DATASETS = sorted(p for p in FIXTURES.glob("*.jsonl") if not p.stem.endswith("_samples"))
ALL = [p for d in DATASETS for p in load_dataset(str(d)).problems]
ALL_MODEL = SyntheticModel(ALL, seed=0)


def cut(text: str, stops: tuple[str, ...]) -> str:
    """The completion a client gets with these stop strings (vLLM drops the stop itself)."""
    ends = [text.find(s) for s in stops if s in text]
    return text[: min(ends)] if ends else text


def completion(problem, sample_seed, model=MODEL) -> str:
    sample = model.sample(problem.prompt, sample_seed)
    return cut(model.sample_text(sample, len(sample.head) + 50), TASKS[problem.kind].stop)


def chat_answer(problem, sample_seed, model=MODEL) -> str:
    messages = [Message(m["role"], m["content"]) for m in chat_messages(problem, "system")]
    return "".join(model.chat_sample(messages, sample_seed).head)


def answers(problem) -> set[str]:
    """Every completion the model may give: the reference and its mutants."""
    ref = reference(problem)
    return {ref, *(m.body for m in mutants(problem.prompt, ref, entry_point(problem)))}


def reference(problem) -> str:
    ref = TASKS[problem.kind].reference(problem)
    assert ref is not None
    return ref


def entry_point(problem) -> str:
    return problem.payload.get("entry_point") or ""


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(ALL), st.one_of(st.none(), st.integers(0, 2**31)))
def test_every_kind_answers_with_its_reference_or_a_mutant_in_both_forms(problem, seed):
    # Invariant (every fixture kind): the completion the client keeps after the kind's stops is
    # the reference or a mutant; the chat answer is right or wrong with it, and where the kind
    # takes the fenced code back unchanged (and the prompt does not open the function, as
    # HumanEval's does: those answers repeat the header), it is the same text.
    if TASKS[problem.kind].reference(problem) is None:
        return
    sample = ALL_MODEL.sample(problem.prompt, seed)
    text = completion(problem, seed, ALL_MODEL)
    assert text.rstrip("\n") in {a.rstrip("\n") for a in answers(problem)}
    messages = [Message(m["role"], m["content"]) for m in chat_messages(problem, "system")]
    chat = ALL_MODEL.chat_sample(messages, seed)
    assert (chat.kind == "canonical") == (sample.kind == "canonical") and chat.eos
    opens_function = "function" in instruct.function_prefixes(problem.prompt, entry_point(problem))
    if not opens_function and kinds.answer_is_whole_code(problem, reference(problem)):
        assert extract_completion(problem, "".join(chat.head)).rstrip("\n") == text.rstrip("\n")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(PROBLEMS), st.one_of(st.none(), st.integers(0, 2**31)))
def test_an_mbpp_completion_cut_by_its_stops_is_the_reference_or_a_mutant(problem, seed):
    # Invariant: what the client keeps (after MBPP's stops) is one of the model's answers,
    # the reference exactly when the sample is "canonical".
    kind = MODEL.sample(problem.prompt, seed).kind
    text = completion(problem, seed)
    assert text.rstrip("\n") in {a.rstrip("\n") for a in answers(problem)}
    assert (text.rstrip("\n") == reference(problem).rstrip("\n")) == (kind == "canonical")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(PROBLEMS), st.one_of(st.none(), st.integers(0, 2**31)))
def test_an_mbpp_chat_answer_extracts_to_what_the_completion_model_gives(problem, seed):
    # Invariant: right or wrong exactly as the completions form for the same seed, and the kind's
    # extract() takes the same answer out of the chat.
    extracted = extract_completion(problem, chat_answer(problem, seed))
    assert extracted.rstrip("\n") == completion(problem, seed).rstrip("\n")


def test_rates_cover_every_problem_and_both_ends_occur():
    rates = [MODEL.solve_rate(p.task_id) for p in PROBLEMS]
    assert all(0 <= r <= 1 for r in rates) and 0.2 < sum(rates) / len(rates) < 0.8
    seen = {MODEL.sample(p.prompt, s).kind == "canonical" for p in PROBLEMS for s in range(50)}
    assert seen == {True, False}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_trailer_of_every_kind_is_cut_before_any_code(name):
    # Invariant: whatever follows the answer is cut by the kind's stops before anything but blank
    # space, so the answer the client keeps is exactly the reference or a mutant.
    task = TASKS[name]
    problem = next((p for p in PROBLEMS if p.kind == name), None)
    problem = problem or next((p for p in ALL if p.kind == name), None)
    trailers = kinds.trailers(problem) if problem else TRAILERS
    for trailer in trailers:
        text = trailer.format(call="f()", entry="f")
        assert not cut(text, tuple(task.stop)).strip(), (name, trailer)


def test_humaneval_keeps_its_trailers_and_mbpp_gets_its_stops():
    humaneval = load_dataset("humaneval").problems[0]
    assert kinds.trailers(humaneval) == TRAILERS
    assert kinds.trailers(PROBLEMS[0]) == tuple("\n" + s + "\n" for s in TASKS["mbpp"].stop)


def test_a_problem_without_a_reference_is_answered_with_a_placeholder_that_fails():
    lone = mbpp_problem("no-ref", "Add two numbers.", ["assert add(1, 2) == 3"], code=None)
    model = SyntheticModel([*PROBLEMS, lone], seed=0)
    assert model.unanswerable() == ["no-ref"] and model.solve_rate("no-ref") == 0.0
    for seed in (None, 0, 1):
        sample = model.sample(lone.prompt, seed)
        assert sample.kind == "placeholder" and sample.eos and "".join(sample.head) == PLACEHOLDER
        messages = [Message(m["role"], m["content"]) for m in chat_messages(lone, "")]
        assert extract_completion(lone, "".join(model.chat_sample(messages, seed).head)) == PLACEHOLDER
    with pytest.raises(NotImplementedError):  # the placeholder fails as any kind's program
        exec(compile(TASKS["mbpp"].program(lone, PLACEHOLDER, guards=False), "<sample>", "exec"), {})
    # The other problems' rates do not move: solve rates are over problems with a reference.
    assert [model.solve_rate(p.task_id) for p in PROBLEMS] == [MODEL.solve_rate(p.task_id) for p in PROBLEMS]


WHOLE_PROGRAM = (
    "import sys\n\n\ndef main():\n    n = int(sys.stdin.readline())\n    total = 0\n"
    "    for i in range(n):\n        if i % 2 == 0:\n            total += i\n    print(total)\n\n\nmain()\n"
)


@pytest.mark.parametrize("program", ["x = 1\n", "print(sum(range(3)))\n", WHOLE_PROGRAM])
def test_a_whole_program_without_an_entry_point_gets_mutants(program):
    # Invariant: each mutant differs from the program; all but syntax errors still parse.
    found = mutants("", program, "")
    assert found and all(m.body != program for m in found)
    for m in found:
        if m.kind != "syntax_error":
            ast.parse(m.body)
    if program == WHOLE_PROGRAM:
        assert {m.kind for m in found} == set(KINDS)


# -- end to end: engine run against engine simulate, both on MBPP's fixture -------------------


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    hosts = tmp_path_factory.mktemp("sim") / "hosts.txt"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine",
            "simulate",
            "--servers",
            "2",
            "--hosts-file",
            str(hosts),
            "--tokens-per-second",
            "50000",
            "--dataset",
            str(MBPP),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not hosts.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
        time.sleep(0.05)
    yield hosts
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err


SAMPLES = 24


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_engine_run_on_mbpp_scores_near_the_configured_rate(simulator, tmp_path, api):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "run",
            "--servers",
            str(simulator),
            "--dataset",
            str(MBPP),
            "--samples",
            str(SAMPLES),
            "--out",
            str(tmp_path / "run"),
            "--no-metrics",
            "--json",
            "--workers",
            "2",
            "--api",
            api,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr  # preflight passed and every sample was verified
    summary = orjson.loads(done.stdout)
    assert summary["samples"] == SAMPLES * len(PROBLEMS)
    passed = summary["verdicts"].get("passed", 0) / summary["samples"]
    expected = sum(MODEL.solve_rate(p.task_id) for p in PROBLEMS) / len(PROBLEMS)
    # Neither all-fail nor all-pass meets this; a rare mutant equivalent to the reference may
    # pass, so the range leans up a little.
    assert expected - 0.15 <= passed <= expected + 0.2, (passed, expected, summary["verdicts"])


def test_simulate_says_which_problems_have_no_reference_and_serves_them(tmp_path):
    dataset = tmp_path / "noref.jsonl"
    row = {
        "task_id": "no-ref",
        "text": "Add two numbers.",
        "test_list": ["assert add(1, 2) == 3"],
        "code": "",
    }
    dataset.write_bytes(orjson.dumps(row) + b"\n")
    hosts = tmp_path / "hosts.txt"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine",
            "simulate",
            "--servers",
            "1",
            "--hosts-file",
            str(hosts),
            "--dataset",
            str(dataset),
            "--task",
            "mbpp",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not hosts.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err
    assert "1 of 1 problems have no reference solution (no-ref)" in err
