"""The durable result store: one SQLite file (WAL) in the run's --out directory.

One row per sample, inserted when its generation finishes and completed when its verdict
arrives. A row whose verdict is `infra_error` (the sandbox failed, not the program) counts as
not verified: it is left out of pass@k and verified again by the next run. Writes are staged in memory and committed in batches by `flush()`: a crash loses at
most the last unflushed batch, and a lost row is simply generated (or verified) again on
resume, so no sample is ever counted twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from engine.errors import InputError
from engine.store.reads import StoreReads
from engine.store.schema import DAMAGE, DB_NAME, connect
from engine.store.writes import StoreWrites

# meta key: {task_id: why} of the problems whose reference failed its own tests at the last preflight
FLAGGED = "flagged_references"
HEARTBEAT_S = 2.0  # how often a running command says so in its store (`engine status`, the run lock)


def read_heartbeat(run_dir: str | Path) -> dict | None:
    """The last heartbeat of the run in `run_dir`, read-only; None without a readable store."""
    path = Path(run_dir) / DB_NAME
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'heartbeat'").fetchone()
        finally:
            db.close()
        return json.loads(row[0]) if row else None
    except (sqlite3.Error, ValueError):  # ValueError: UnicodeDecodeError, bad JSON
        return None


class Store(StoreReads, StoreWrites):
    def __init__(self, path: Path):
        self.path = path
        self._db = connect(path)
        super().__init__()  # StoreWrites: the staged batches, empty

    @staticmethod
    def move_aside(out_dir: str | Path) -> Path | None:
        """Start afresh in `out_dir`, keeping the old results as results.<time>.sqlite."""
        db = Path(out_dir) / DB_NAME
        if not db.exists():
            return None
        kept = db.with_name(f"results.{time.strftime('%Y%m%d-%H%M%S')}.sqlite")
        try:
            connection = sqlite3.connect(db)
            try:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # fold the WAL in: one file to move
            finally:
                connection.close()
        except DAMAGE:  # a damaged store: keep its WAL beside it, as it is
            wal = Path(str(db) + "-wal")
            if wal.exists():
                os.replace(wal, str(kept) + "-wal")
        os.replace(db, kept)
        for suffix in ("-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        return kept

    @staticmethod
    def require(out_dir: str | Path) -> None:
        """InputError unless `out_dir` holds a run."""
        if not (Path(out_dir) / DB_NAME).is_file():
            raise InputError(f"{out_dir} holds no run (no {DB_NAME})")

    @classmethod
    def open(cls, out_dir: str | Path, create: bool = True) -> Store:
        out = Path(out_dir)
        if not create:
            cls.require(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create output directory {out}: {exc.strerror}") from exc
        return cls(out / DB_NAME)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._db.close()
