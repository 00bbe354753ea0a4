import sqlite3

import pytest

from engine.errors import InputError
from engine.records import Problem, Sample
from engine.store import Store, StoredVerdict


def sample(task, i, text="    return 1\n"):
    return Sample(task, i, text, 5, "stop", "http://s:1", 1.0, 1.1, 1.2)


def verdict(task, i, v="passed"):
    return StoredVerdict(task, i, v, "", "", 0.01, "nsjail", {"timeout_s": 3.0})


def test_staged_writes_reach_disk_only_on_flush(tmp_path):
    store = Store.open(tmp_path)
    store.stage_sample(sample("A", 0))
    assert Store.open(tmp_path).totals()["samples"] == 0
    store.flush()
    assert Store.open(tmp_path).totals()["samples"] == 1


def test_verdict_in_the_same_batch_completes_the_row(tmp_path):
    store = Store.open(tmp_path)
    store.stage_sample(sample("A", 0))
    store.stage_verdict(verdict("A", 0))
    store.stage_sample(sample("A", 1))
    store.flush()
    assert store.pass_counts() == {"A": (1, 1)}
    assert [s.sample_index for s in store.unverified()] == [1]
    assert store.generated_indices() == {"A": {0, 1}}


def test_a_sample_is_stored_once_even_if_staged_twice(tmp_path):
    store = Store.open(tmp_path)
    store.stage_sample(sample("A", 0, "first"))
    store.stage_sample(sample("A", 0, "second"))
    store.flush()
    rows = list(store.rows())
    assert len(rows) == 1 and rows[0]["completion"] == "first"


def test_generation_failures_are_cleared_when_the_sample_arrives(tmp_path):
    store = Store.open(tmp_path)
    store.stage_failure("A", 3, "HTTP 503", 4)
    store.flush()
    assert store.totals()["generation_failures"] == 1
    store.stage_sample(sample("A", 3))
    store.flush()
    assert store.totals()["generation_failures"] == 0


def test_counts_meta_and_problems(tmp_path):
    store = Store.open(tmp_path)
    store.save_problems([Problem("B", "p", "t", "f"), Problem("A", "p", "t", "f")])
    for i, v in enumerate(["passed", "failed", "timeout"]):
        store.stage_sample(sample("A", i))
        store.stage_verdict(verdict("A", i, v))
    store.stage_sample(sample("B", 0))
    store.stage_verdict(verdict("B", 0, "failed"))
    store.flush()
    store.set_meta("sampling", {"temperature": 0.8})
    assert store.get_meta("sampling") == {"temperature": 0.8}
    assert store.verdict_counts() == {"passed": 1, "failed": 2, "timeout": 1}
    assert store.verdict_counts({"B"}) == {"failed": 1}
    assert [p.task_id for p in store.problems()] == ["B", "A"]
    assert [(r["task_id"], r["sample_index"]) for r in store.rows()] == [("B", 0), ("A", 0), ("A", 1), ("A", 2)]


def test_not_a_database_is_an_input_error(tmp_path):
    (tmp_path / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError):
        Store.open(tmp_path)


def test_open_without_create_needs_a_run(tmp_path):
    with pytest.raises(InputError, match="holds no run"):
        Store.open(tmp_path / "nothing", create=False)
