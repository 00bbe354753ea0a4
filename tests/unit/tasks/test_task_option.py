"""--task on `engine run` and `engine verify`: an unknown kind, or a dataset whose fields fit no
kind, ends with one line on stderr and exit status 2, before anything starts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def engine(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def one_line_exit_2(result, *needles):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and all(n in lines[0] for n in needles), lines[0]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "hosts.txt").write_text("http://127.0.0.1:9\n")
    (tmp_path / "samples.jsonl").write_text(json.dumps({"task_id": "X/0", "completion": "pass"}) + "\n")
    (tmp_path / "odd.jsonl").write_text(json.dumps({"task_id": "X/0", "question": "?"}) + "\n")
    return tmp_path


@pytest.mark.parametrize("command", ["run", "verify"])
def test_an_unknown_task_kind_is_refused_in_one_line(files, command):
    args = ["--servers", "hosts.txt"] if command == "run" else ["samples.jsonl"]
    one_line_exit_2(engine(command, *args, "--task", "bogus", cwd=files), "--task", "bogus", "humaneval")


@pytest.mark.parametrize("command", ["run", "verify"])
def test_a_dataset_that_fits_no_kind_is_refused_in_one_line(files, command):
    args = ["--servers", "hosts.txt", "--no-metrics"] if command == "run" else ["samples.jsonl"]
    result = engine(command, *args, "--dataset", "odd.jsonl", cwd=files)
    one_line_exit_2(result, "odd.jsonl", "fit no task kind", "--task")


def test_a_named_kind_the_rows_do_not_fit_names_the_row(files):
    result = engine("verify", "samples.jsonl", "--dataset", "odd.jsonl", "--task", "humaneval", cwd=files)
    one_line_exit_2(result, "row 1 lacks", "test")


@pytest.mark.parametrize(
    ("given", "kind", "expected"), [(None, "mbpp", "mbpp's"), ("Mine.", "mbpp", "Mine.")]
)
def test_the_chat_system_prompt_is_the_kinds_unless_given(given, kind, expected):
    from engine.config import SamplingSettings
    from engine.run import _system_prompt
    from engine.tasks import TASKS, Dataset

    dataset = Dataset("d.jsonl", TASKS[kind], [])
    wanted = TASKS[kind].system_prompt if expected == "mbpp's" else expected
    assert _system_prompt(SamplingSettings(system_prompt=given), dataset) == wanted
