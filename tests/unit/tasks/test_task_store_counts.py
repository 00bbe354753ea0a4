"""Per-sample test counts (tests_passed, tests_total, base_passed) go from the Outcome the store
is given to the store, `engine export` (JSONL and Parquet) and `engine status --json`; a store
written before these columns reads back with them null.

Invariant: whatever an Outcome says about its tests (None included) is what every reader sees,
and status's mean fraction is the mean of tests_passed / tests_total over the verified samples
of multi-test kinds (infrastructure errors and single-test kinds left out)."""

from __future__ import annotations

import sqlite3

import orjson
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.export import export
from engine.records import Problem, Sample
from engine.status import render, run_status
from engine.store import DB_NAME, Store, StoredVerdict
from sandbox import Limits, Outcome, Verdict

FIELDS = ("tests_passed", "tests_total", "base_passed")


@st.composite
def judged(draw):
    """A verdict with its test counts: none (HumanEval, MBPP), counts (stdio, call), or counts
    and the base suite (EvalPlus-style); infrastructure errors among them."""
    verdict = draw(st.sampled_from(list(Verdict)))
    shape = draw(st.sampled_from(["single", "multi", "evalplus"]))
    if shape == "single":
        return verdict, None, None, None
    total = draw(st.integers(1, 500))
    passed = total if verdict is Verdict.passed else draw(st.integers(0, total - 1))
    base = draw(st.booleans()) if shape == "evalplus" else None
    return verdict, passed, total, base


def outcome(verdict, passed, total, base) -> Outcome:
    return Outcome(verdict, "d", 0.01, "nsjail", Limits(), "", 0.0, False, False, passed, total, base)


def stored_run(path, cases) -> None:
    store = Store.open(path)
    store.save_problems([Problem("call/p", "prompt", "call", {})])
    for i, case in enumerate(cases):
        store.stage_sample(Sample("call/p", i, "c", 1, "stop", "s", 1.0, None, 2.0))
        store.stage_verdict(StoredVerdict.of("call/p", i, outcome(*case)))
    store.close()


def expected_tests(cases) -> dict | None:
    scored = [c for c in cases if c[0] is not Verdict.infra_error and c[2] is not None]
    if not scored:
        return None
    judged_base = [c[3] for c in scored if c[3] is not None]
    return {
        "samples": len(scored),
        "mean_fraction_passed": round(sum(c[1] / c[2] for c in scored) / len(scored), 6),
        "base_judged": len(judged_base),
        "base_passed": sum(judged_base),
    }


@settings(max_examples=25, deadline=None)
@given(cases=st.lists(judged(), min_size=0, max_size=12))
def test_counts_reach_the_store_exports_and_status(tmp_path_factory, cases):
    run = tmp_path_factory.mktemp("run")
    stored_run(run, cases)
    wanted = [dict(zip(FIELDS, c[1:])) for c in cases]

    assert export(str(run), "jsonl", run / "out.jsonl") == len(cases)
    lines = (run / "out.jsonl").read_bytes().splitlines()
    assert [{k: orjson.loads(line)[k] for k in FIELDS} for line in lines] == wanted

    assert export(str(run), "parquet", run / "out.parquet") == len(cases)
    table = pq.read_table(run / "out.parquet").to_pylist()
    assert [{k: row[k] for k in FIELDS} for row in table] == wanted

    status = run_status(str(run))
    assert status["tests"] == expected_tests(cases)
    assert ("tests passed: mean fraction" in render(status)) == (status["tests"] is not None)


def test_a_judgement_overrides_the_outcome():
    """`engine verify --retry` judges the outcome again: the judgement's counts are stored."""
    from engine.tasks import Judgement

    v = StoredVerdict.of(
        "t", 0, outcome(Verdict.failed, 1, 3, None), Judgement(Verdict.passed, "", 3, 3, True)
    )
    assert (v.verdict, v.tests_passed, v.tests_total, v.base_passed) == ("passed", 3, 3, True)


def test_an_old_store_gains_the_columns_null(tmp_path):
    (tmp_path / "run").mkdir()
    db = sqlite3.connect(tmp_path / "run" / DB_NAME)
    db.executescript(  # the samples table as the first release wrote it
        "CREATE TABLE samples (task_id TEXT NOT NULL, sample_index INTEGER NOT NULL, completion TEXT NOT NULL,"
        " completion_tokens INTEGER NOT NULL, finish_reason TEXT NOT NULL, server TEXT NOT NULL,"
        " requested_at REAL NOT NULL, first_token_at REAL, finished_at REAL NOT NULL, verdict TEXT, detail TEXT,"
        " output TEXT, verify_wall_s REAL, backend TEXT, limits TEXT, verified_at REAL,"
        " PRIMARY KEY (task_id, sample_index)) WITHOUT ROWID;"
        "INSERT INTO samples VALUES ('HumanEval/0', 0, 'c', 3, 'stop', 's', 1.0, NULL, 2.0,"
        " 'passed', '', '', 0.01, 'nsjail', '{}', 3.0);"
    )
    db.commit()
    db.close()
    assert export(str(tmp_path / "run"), "jsonl", tmp_path / "out.jsonl") == 1
    [row] = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert {k: row[k] for k in FIELDS} == dict.fromkeys(FIELDS)
    assert run_status(str(tmp_path / "run"))["tests"] is None
