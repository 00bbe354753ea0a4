"""The per-problem table (`engine report --table FILE.csv|FILE.parquet`)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from engine.analysis.estimators import VERDICTS
from engine.analysis.load import Run
from engine.errors import InputError

COLUMNS = (
    "run",
    "task_id",
    "n",
    "c",
    "p_hat",
    "first_pass",
    "unique_completions",
    *VERDICTS,
    "excluded",
    "median_wall_s",
    "median_cpu_s",
)


def _median(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.median(finite)) if finite else None


def rows(run: Run) -> list[dict]:
    """One row per problem with any result; p_hat is c/n (None when nothing counts)."""
    table = []
    for p in run.problems:
        table.append(
            {
                "run": run.out,
                "task_id": p.task_id,
                "n": p.n,
                "c": p.c,
                "p_hat": p.c / p.n if p.n else None,
                "first_pass": p.first_pass(),
                "unique_completions": p.unique_completions,
                **{v: p.results.get(v, 0) for v in VERDICTS},
                "excluded": sum(count for result, count in p.results.items() if result not in VERDICTS),
                "median_wall_s": _median(p.wall_s),
                "median_cpu_s": _median(p.cpu_s),
            }
        )
    return table


def write_table(runs: list[Run], path: Path) -> int:
    """Write every run's rows to CSV or Parquet (by the file's suffix); returns the row count."""
    every = [row for run in runs for row in rows(run)]
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputError(f"--table {path}: the file must end in .csv or .parquet")
    try:
        if suffix == ".csv":
            with open(path, "w", newline="") as sink:
                writer = csv.DictWriter(sink, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(every)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(every, schema=_schema(pa)), path)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from exc
    return len(every)


def _schema(pa):
    types = {
        "run": pa.string(),
        "task_id": pa.string(),
        "p_hat": pa.float64(),
        "median_wall_s": pa.float64(),
        "median_cpu_s": pa.float64(),
    }
    return pa.schema([(name, types.get(name, pa.int64())) for name in COLUMNS])
