"""engine/tasks/source.py reads JSON Lines itself (the `datasets` library only for the other
formats): the same problems as before, and any damaged file is one DatasetError."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import DatasetError
from engine.tasks import load_problems
from engine.tasks.humaneval import embedded_path
from engine.tasks.source import _datasets_module

ROW = {"task_id": "a", "prompt": "p", "test": "t", "entry_point": "f", "canonical_solution": "c"}


def test_humaneval_reads_as_the_datasets_library_reads_it() -> None:
    datasets = _datasets_module(offline=True)
    rows = datasets.load_dataset("json", data_files=str(embedded_path()), split="train").to_list()
    assert [(p.task_id, p.prompt, p.payload) for p in load_problems()] == [
        (r["task_id"], r["prompt"], {k: r[k] for k in ("test", "entry_point", "canonical_solution")})
        for r in rows
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_one_row_blank_lines_and_gzip(tmp_path, suffix) -> None:
    data = b"\n" + json.dumps(ROW).encode() + b"\n\n"
    path = tmp_path / f"d{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    (problem,) = load_problems(str(path))
    assert (problem.task_id, problem.payload["canonical_solution"]) == ("a", "c")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=100), st.sampled_from([".jsonl", ".jsonl.gz"]))
def test_any_bytes_give_problems_or_one_dataset_error(content: bytes, suffix: str) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{suffix}"
        path.write_bytes(content)
        try:
            load_problems(str(path))
        except DatasetError as exc:
            assert str(path) in str(exc) or "dataset" in str(exc)
