"""What a notebook needs beyond the sweep and the verifier: a run's results as rows or a table."""

from __future__ import annotations

from pathlib import Path

from engine.export import export_rows
from engine.store import Store


def results(run_dir: str | Path) -> list[dict]:
    """One row per sample of a run, exactly as `engine export` writes them (task_id, sample_index,
    completion, passed, result, and what else the store keeps); the store is only read."""
    store = Store.open(str(run_dir), create=False)
    try:
        return list(export_rows(store))
    finally:
        store.close()


def results_frame(run_dir: str | Path):
    """`results` as a pandas DataFrame (pandas is optional: an ImportError says so)."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            "engine.results_frame needs pandas (pip install pandas); engine.results gives dicts"
        ) from exc
    return pandas.DataFrame.from_records(results(run_dir))
