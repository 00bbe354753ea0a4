"""Through the real sandbox: `engine verify --retry` on a stored run of a multi-test kind judges
each sample again and stores its test counts, which `engine export` and `engine status` read.

Invariant: a reference passes every test (tests_passed == tests_total > 0); a dataset's incorrect
solution passes fewer; EvalPlus-style rows carry base_passed, the others leave it null."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from engine.records import Sample
from engine.store import Store, StoredVerdict
from engine.tasks import load_dataset

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"


def engine(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done


def stored_run(run: Path, name: str) -> dict[tuple[str, int], bool]:
    """Each problem's reference and incorrect solutions, stored as timeouts so --retry re-runs
    them; returns which samples are references."""
    dataset = load_dataset(str(FIXTURES / f"{name}.jsonl"))
    task = dataset.task
    store = Store.open(run)
    store.save_problems(dataset.problems)
    is_reference = {}
    for p in dataset.problems:
        wrong = (
            getattr(task, "incorrect", lambda p: [])(p) or list(task.known_bad(p, guards=True).values())[:1]
        )
        for i, completion in enumerate([task.reference(p) or "", *wrong]):
            store.stage_sample(Sample(p.task_id, i, completion, 1, "stop", "s", 1.0, None, 2.0))
            store.stage_verdict(StoredVerdict(p.task_id, i, "timeout", "", "", 0.0, "nsjail", {}))
            # the stdio fixture's broken-reference fails its own last test, as CodeContests' can
            is_reference[p.task_id, i] = i == 0 and p.task_id != "broken-reference"
    store.close()
    return is_reference


@pytest.mark.parametrize("name", ["call", "stdio", "evalplus"])
def test_retry_stores_the_counts_export_and_status_read_them(tmp_path, name):
    run = tmp_path / "run"
    is_reference = stored_run(run, name)
    engine("verify", str(run), "--retry", "timeout", "--json", "--workers", "2")
    engine("export", str(run), "--out", str(tmp_path / "out.jsonl"))
    rows = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert len(rows) == len(is_reference)
    for row in rows:
        assert row["tests_total"] > 0, row
        if is_reference[row["task_id"], row["sample_index"]]:
            assert (row["result"], row["tests_passed"]) == ("passed", row["tests_total"]), row
        else:
            assert row["result"] != "passed" and row["tests_passed"] < row["tests_total"], row
        assert (row["base_passed"] is not None) == (name == "evalplus"), row
    status = orjson.loads(engine("status", str(run), "--json").stdout)
    assert status["tests"]["samples"] == len(rows)
    assert 0 < status["tests"]["mean_fraction_passed"] < 1
