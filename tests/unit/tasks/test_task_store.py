"""The store keeps each problem's task kind and payload; runs stored before kinds existed read
back as HumanEval; exports and results carry `task_kind`."""

from __future__ import annotations

import sqlite3

import orjson
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.export import export
from engine.records import Problem, Sample
from engine.store import DB_NAME, Store
from engine.tasks import humaneval

OLD_SCHEMA = """
CREATE TABLE problems (task_id TEXT PRIMARY KEY, position INTEGER NOT NULL,
    prompt TEXT NOT NULL, test TEXT NOT NULL, entry_point TEXT NOT NULL);
CREATE TABLE samples (task_id TEXT NOT NULL, sample_index INTEGER NOT NULL, completion TEXT NOT NULL,
    completion_tokens INTEGER NOT NULL, finish_reason TEXT NOT NULL, server TEXT NOT NULL,
    requested_at REAL NOT NULL, first_token_at REAL, finished_at REAL NOT NULL, verdict TEXT, detail TEXT,
    output TEXT, verify_wall_s REAL, backend TEXT, limits TEXT, verified_at REAL,
    PRIMARY KEY (task_id, sample_index)) WITHOUT ROWID;
"""
payloads = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3),
        max_leaves=6,
    ),
    max_size=4,
)


def old_run(path):
    """A store as an engine before task kinds wrote it: one problem, one verified sample."""
    path.mkdir()
    db = sqlite3.connect(path / DB_NAME)
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO problems VALUES ('HumanEval/0', 0, 'def f(x):\n', 'def check(c): pass', 'f')")
    db.execute(
        "INSERT INTO samples VALUES ('HumanEval/0', 0, '    return x\n', 3, 'stop', 's', 1.0, NULL, 2.0,"
        " 'passed', '', '', 0.01, 'nsjail', '{}', 3.0)"
    )
    db.commit()
    db.close()


def test_an_old_run_reads_back_as_humaneval_and_exports_its_kind(tmp_path):
    old_run(tmp_path / "run")
    store = Store.open(tmp_path / "run", create=False)
    assert store.problems() == [humaneval.problem("HumanEval/0", "def f(x):\n", "def check(c): pass", "f")]
    store.close()
    assert export(str(tmp_path / "run"), "jsonl", tmp_path / "out.jsonl") == 1
    [row] = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert (row["task_id"], row["result"], row["passed"], row["task_kind"]) == (
        "HumanEval/0",
        "passed",
        True,
        "humaneval",
    )


@settings(max_examples=30, deadline=None)
@given(kinds=st.lists(st.sampled_from(["humaneval", "mbpp", ""]), min_size=0, max_size=4), payload=payloads)
def test_problems_round_trip_with_kind_and_payload(tmp_path_factory, kinds, payload):
    # Invariant: what a run saves is what it reads back, in order, whatever the kind's payload.
    store = Store.open(tmp_path_factory.mktemp("run"))
    problems = [Problem(f"T/{i}", f"p{i}", kind, payload) for i, kind in enumerate(kinds)]
    store.save_problems(problems)
    assert store.problems() == problems
    store.close()


def test_parquet_and_jsonl_exports_carry_each_samples_task_kind(tmp_path):
    store = Store.open(tmp_path / "run")
    store.save_problems([Problem("M/1", "p", "mbpp", {"test_list": []})])
    for i in range(2):
        store.stage_sample(Sample("M/1", i, "c", 1, "stop", "s", 1.0, None, 2.0))
    store.close()
    export(str(tmp_path / "run"), "parquet", tmp_path / "out.parquet")
    assert pq.read_table(tmp_path / "out.parquet").column("task_kind").to_pylist() == ["mbpp", "mbpp"]
    export(str(tmp_path / "run"), "jsonl", tmp_path / "out.jsonl")
    rows = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert [r["task_kind"] for r in rows] == ["mbpp", "mbpp"] and list(rows[0])[:6] == [
        "task_id",
        "sample_index",
        "completion",
        "passed",
        "result",
        "task_kind",
    ]
