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
    store.save_problems([Problem("B", "p"), Problem("A", "p")])
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
    assert [(r["task_id"], r["sample_index"]) for r in store.rows()] == [
        ("B", 0),
        ("A", 0),
        ("A", 1),
        ("A", 2),
    ]


def test_not_a_database_is_an_input_error(tmp_path):
    (tmp_path / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError):
        Store.open(tmp_path)


def test_open_without_create_needs_a_run(tmp_path):
    with pytest.raises(InputError, match="holds no run"):
        Store.open(tmp_path / "nothing", create=False)


def test_infra_errors_are_not_verified_not_in_pass_at_k_and_come_back_on_resume(tmp_path):
    """Invariant: an infra_error row counts nowhere a verdict counts (n of pass@k, verified
    samples, seeds for dedup) and is handed out again as unverified, until a verdict replaces it."""
    from engine.summary import summarize

    store = Store.open(tmp_path)
    for i, v in enumerate(["passed", "infra_error", "failed"]):
        store.stage_sample(sample("A", i))
        store.stage_verdict(verdict("A", i, v))
    store.stage_sample(sample("B", 0))
    store.stage_verdict(verdict("B", 0, "infra_error"))  # a problem with nothing but an infra error
    store.flush()
    assert store.pass_counts() == {"A": (2, 1)}
    assert [(s.task_id, s.sample_index) for s in store.unverified()] == [("A", 1), ("B", 0)]
    assert sorted((r[0], r[1]) for r in store.verified()) == [("A", 0), ("A", 2)]
    assert [(r[0], r[1]) for r in store.verified("infra_error")] == [("A", 1), ("B", 0)]
    totals = store.totals()
    assert (totals["samples"], totals["verified"], totals["infra_errors"]) == (4, 2, 2)
    summary = summarize(store.pass_counts(), store.verdict_counts())
    assert summary["samples"] == 4 and summary["infra_errors"] == 2 and sum(summary["verdicts"].values()) == 2
    assert summary["pass_at_k"] == {"1": 0.5, "2": 1.0}
    store.stage_verdict(verdict("B", 0, "failed"))  # verified again on resume
    store.flush()
    assert store.pass_counts() == {"A": (2, 1), "B": (1, 0)} and store.totals()["infra_errors"] == 1
