"""`engine export` as a process: the format from the file's name, stdout, a reader that leaves early.
The export's rows are checked in-process in tests/unit/test_export.py."""

import pyarrow.parquet as pq
from stored_run import make_run

from engine.export import export
from engine.records import Sample
from engine.store import Store


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
