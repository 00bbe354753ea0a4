"""The store's file: its tables, the columns added since the first release, the connection, and
how a damaged file or a failed write is said (one line naming the file, never a sqlite3
traceback)."""

from __future__ import annotations

import functools
import inspect
import sqlite3
from pathlib import Path

from engine.errors import StorageError, StoreDamagedError

DB_NAME = "results.sqlite"
# What sqlite3 raises on a damaged file (it even fails to decode some of its own messages).
DAMAGE = (sqlite3.DatabaseError, UnicodeDecodeError)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS problems (
    task_id TEXT PRIMARY KEY, position INTEGER NOT NULL,
    prompt TEXT NOT NULL, test TEXT NOT NULL, entry_point TEXT NOT NULL,  -- test, entry_point: runs before task kinds
    kind TEXT,                  -- the task kind (engine/tasks/); NULL: a run stored before kinds existed
    payload TEXT                -- JSON: the kind's own fields of the problem
);
CREATE TABLE IF NOT EXISTS samples (
    task_id TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    completion TEXT NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    server TEXT NOT NULL,
    requested_at REAL NOT NULL,
    first_token_at REAL,
    finished_at REAL NOT NULL,
    response TEXT,              -- a chat model's raw answer, when the completion was cut out of it
    verdict TEXT,               -- NULL until verified; 'infra_error': the sandbox failed, verified again on resume
    detail TEXT,
    output TEXT,
    verify_wall_s REAL,
    backend TEXT,
    limits TEXT,                -- JSON: the limits the verdict was obtained under
    verified_at REAL,
    cpu_s REAL,                 -- CPU time of the program and its descendants (0 when reused)
    reused INTEGER,             -- 1: the verdict of an identical earlier sample (dedup), not a new run
    tests_passed INTEGER,       -- multi-test kinds (stdio, call, evalplus): tests passed; NULL otherwise
    tests_total INTEGER,        -- ... and tests in the suite (the fraction is an RL reward)
    base_passed INTEGER,        -- EvalPlus-style: 1 when the base suite alone passed; NULL otherwise
    PRIMARY KEY (task_id, sample_index)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS samples_by_verified_at ON samples (verified_at);
CREATE INDEX IF NOT EXISTS samples_by_verdict ON samples (verdict);  -- counts at scrape time, no table scan
CREATE TABLE IF NOT EXISTS generation_failures (
    task_id TEXT NOT NULL, sample_index INTEGER NOT NULL,
    error TEXT NOT NULL, attempts INTEGER NOT NULL, failed_at REAL NOT NULL,
    PRIMARY KEY (task_id, sample_index)
) WITHOUT ROWID;
"""


# Columns added after the first release, for stores created before them.
LATER_COLUMNS = [
    ("samples", "response", "TEXT"),
    ("samples", "cpu_s", "REAL"),
    ("samples", "reused", "INTEGER"),
    ("problems", "kind", "TEXT"),
    ("problems", "payload", "TEXT"),
    ("samples", "tests_passed", "INTEGER"),
    ("samples", "tests_total", "INTEGER"),
    ("samples", "base_passed", "INTEGER"),
]


def connect(path: Path) -> sqlite3.Connection:
    """The store at `path` (WAL), created or brought up to the current schema."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        _add_missing_columns(db)
    except DAMAGE as exc:
        raise StoreDamagedError(f"{path} is not a usable results store: {exc}") from exc
    return db


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Stores written by an older engine lack newer columns; add them (all nullable)."""
    for table, column, kind in LATER_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def reads(method):
    """A damaged store (a corrupt page, a file that is not SQLite) is found only when a read
    reaches it: say so in one line, naming the file, instead of a sqlite3 traceback."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self, *args, **kwargs):
            try:
                yield from method(self, *args, **kwargs)
            except DAMAGE as exc:
                raise _damaged(self.path, exc) from exc

        return generator

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except DAMAGE as exc:
            raise _damaged(self.path, exc) from exc

    return call


def _damaged(path: Path, exc: Exception) -> StoreDamagedError:
    said = "".join(c if c.isprintable() else "?" for c in str(exc))[:200]  # it may quote damaged bytes
    return StoreDamagedError(
        f"cannot read {path}: {said} (a damaged store: sqlite3's .recover may save its rows)"
    )


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT; a failed write (disk full, I/O error) rolls back, leaving what
    was committed before intact, and becomes a StorageError."""

    def __init__(self, db: sqlite3.Connection, path: Path):
        self._db = db
        self._path = path

    def __enter__(self):
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except DAMAGE as exc:
            raise StorageError(f"cannot write {self._path}: {exc}") from exc

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return False
            except DAMAGE as failed:
                exc = failed
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        if isinstance(exc, DAMAGE):  # disk full, I/O error, a damaged page
            raise StorageError(f"cannot write {self._path}: {exc}") from exc
        return False
