"""The durable result store: one SQLite file (WAL) in the run's --out directory.

One row per sample, inserted when its generation finishes and completed when its verdict
arrives. A row whose verdict is `infra_error` (the sandbox failed, not the program) counts as
not verified: it is left out of pass@k and verified again by the next run. Writes are staged in memory and committed in batches by `flush()`: a crash loses at
most the last unflushed batch, and a lost row is simply generated (or verified) again on
resume, so no sample is ever counted twice.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError, StorageError, StoreDamagedError
from engine.records import Problem, Sample
from engine.summary import INFRA_ERROR  # not a verdict about the program: the sandbox failed
from engine.tasks import LEGACY_KIND, legacy_problem

DB_NAME = "results.sqlite"
# What sqlite3 raises on a damaged file (it even fails to decode some of its own messages).
DAMAGE = (sqlite3.DatabaseError, UnicodeDecodeError)
HEARTBEAT_S = 2.0  # how often a running command says so in its store (`engine status`, the run lock)

_SCHEMA = """
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
_LATER_COLUMNS = [
    ("samples", "response", "TEXT"),
    ("samples", "cpu_s", "REAL"),
    ("samples", "reused", "INTEGER"),
    ("problems", "kind", "TEXT"),
    ("problems", "payload", "TEXT"),
]


@dataclass(frozen=True, slots=True)
class StoredVerdict:
    task_id: str
    sample_index: int
    verdict: str
    detail: str
    output: str
    wall_s: float
    backend: str
    limits: dict
    cpu_s: float = 0.0
    reused: bool = False


def _reads(method):
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


class Store:
    def __init__(self, path: Path):
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._add_missing_columns()
        except DAMAGE as exc:
            raise StoreDamagedError(f"{path} is not a usable results store: {exc}") from exc
        self._staged_samples: list[tuple] = []
        self._staged_verdicts: list[tuple] = []
        self._staged_failures: list[tuple] = []

    def _add_missing_columns(self) -> None:
        """Stores written by an older engine lack newer columns; add them (all nullable)."""
        for table, column, kind in _LATER_COLUMNS:
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

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

    # -- run configuration and problems ------------------------------------------------------

    @_reads
    def get_meta(self, key: str) -> object | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: object) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value, sort_keys=True)),
            )

    def heartbeat(self, **extra) -> None:
        """A running command says so, for `engine status` and the run lock of another process;
        `extra`: live figures for `engine status` (servers up)."""
        self.set_meta(
            "heartbeat", {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), **extra}
        )

    def save_problems(self, problems: list[Problem]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO problems (task_id, position, prompt, test, entry_point, kind, payload)"
                " VALUES (?, ?, ?, '', '', ?, ?)",
                [
                    (p.task_id, i, p.prompt, p.kind, json.dumps(dict(p.payload), sort_keys=True))
                    for i, p in enumerate(problems)
                ],
            )

    @_reads
    def problems(self) -> list[Problem]:
        rows = self._db.execute(
            "SELECT task_id, prompt, test, entry_point, kind, payload FROM problems ORDER BY position"
        )
        return [
            Problem(task_id, prompt, kind, json.loads(payload))
            if kind is not None
            else legacy_problem(task_id, prompt, test, entry_point)
            for task_id, prompt, test, entry_point, kind, payload in rows
        ]

    # -- writes, staged and committed in batches ---------------------------------------------

    def stage_sample(self, s: Sample) -> None:
        self._staged_samples.append(
            (
                s.task_id,
                s.sample_index,
                s.completion,
                s.completion_tokens,
                s.finish_reason,
                s.server,
                s.requested_at,
                s.first_token_at,
                s.finished_at,
                s.response,
            )
        )

    def stage_verdict(self, v: StoredVerdict) -> None:
        self._staged_verdicts.append(
            (
                v.verdict,
                v.detail,
                v.output,
                v.wall_s,
                v.backend,
                json.dumps(v.limits, sort_keys=True),
                time.time(),
                v.cpu_s,
                int(v.reused),
                v.task_id,
                v.sample_index,
            )
        )

    def stage_failure(self, task_id: str, sample_index: int, error: str, attempts: int) -> None:
        self._staged_failures.append((task_id, sample_index, error, attempts, time.time()))

    @property
    def staged(self) -> int:
        return len(self._staged_samples) + len(self._staged_verdicts) + len(self._staged_failures)

    def flush(self) -> None:
        if not self.staged:
            return
        samples, verdicts, failures = self._staged_samples, self._staged_verdicts, self._staged_failures
        with self._transaction():
            # Samples first: a verdict staged in the same batch updates the row just inserted.
            self._db.executemany(
                "INSERT OR IGNORE INTO samples (task_id, sample_index, completion, completion_tokens, finish_reason,"
                " server, requested_at, first_token_at, finished_at, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                samples,
            )
            self._db.executemany(
                "DELETE FROM generation_failures WHERE task_id = ? AND sample_index = ?",
                [(row[0], row[1]) for row in samples],
            )
            self._db.executemany(
                "UPDATE samples SET verdict = ?, detail = ?, output = ?, verify_wall_s = ?, backend = ?, limits = ?,"
                " verified_at = ?, cpu_s = ?, reused = ? WHERE task_id = ? AND sample_index = ?",
                verdicts,
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO generation_failures (task_id, sample_index, error, attempts, failed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                failures,
            )
        self._staged_samples, self._staged_verdicts, self._staged_failures = [], [], []

    def _transaction(self):
        return _Transaction(self._db, self.path)

    # -- reads ---------------------------------------------------------------------------------

    @_reads
    def generated_indices(self) -> dict[str, set[int]]:
        """Sample indices already generated (verified or not), per problem."""
        done: dict[str, set[int]] = {}
        for task_id, index in self._db.execute("SELECT task_id, sample_index FROM samples"):
            done.setdefault(task_id, set()).add(index)
        return done

    @_reads
    def unverified(self) -> Iterator[Sample]:
        rows = self._db.execute(
            "SELECT task_id, sample_index, completion, completion_tokens, finish_reason, server, requested_at,"
            " first_token_at, finished_at, response FROM samples WHERE verdict IS NULL OR verdict = ?"
            " ORDER BY task_id, sample_index",
            (INFRA_ERROR,),
        ).fetchall()
        return (Sample(*row) for row in rows)

    @_reads
    def verified(self, verdict: str | None = None) -> Iterator[tuple]:
        """(task_id, sample_index, completion, verdict, detail, output, backend, limits JSON, cpu_s) of the
        verified samples (infrastructure errors aside), or of those with one verdict (e.g. for
        `engine verify --retry timeout`)."""
        query = (
            "SELECT task_id, sample_index, completion, verdict, detail, output, backend, limits, cpu_s"
            " FROM samples WHERE verdict IS NOT NULL"
        )
        if verdict is not None:
            return iter(
                self._db.execute(
                    query + " AND verdict = ? ORDER BY task_id, sample_index", (verdict,)
                ).fetchall()
            )
        return iter(self._db.execute(query + " AND verdict != ?", (INFRA_ERROR,)).fetchall())

    @_reads
    def pass_counts(self) -> dict[str, tuple[int, int]]:
        """(n verified, c passed) per problem; infrastructure errors are not in n."""
        rows = self._db.execute(
            "SELECT task_id, COUNT(*), SUM(verdict = 'passed') FROM samples WHERE verdict IS NOT NULL AND verdict != ?"
            " GROUP BY task_id",
            (INFRA_ERROR,),
        )
        return {task: (n, int(c)) for task, n, c in rows}

    @_reads
    def verdict_counts(self, task_ids: set[str] | None = None) -> dict[str, int]:
        """Samples per verdict (and infra_error), over all problems or only `task_ids`."""
        rows = self._db.execute(
            "SELECT task_id, verdict, COUNT(*) FROM samples WHERE verdict IS NOT NULL GROUP BY task_id, verdict"
        )
        counts: dict[str, int] = {}
        for task_id, verdict, n in rows:
            if task_ids is None or task_id in task_ids:
                counts[verdict] = counts.get(verdict, 0) + n
        return counts

    @_reads
    def totals(self) -> dict[str, int]:
        samples, tokens, verified, infra = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(completion_tokens), 0), COUNT(verdict) - COUNT(verdict = ? OR NULL),"
            " COUNT(verdict = ? OR NULL) FROM samples",
            (INFRA_ERROR, INFRA_ERROR),
        ).fetchone()
        failures = self._db.execute("SELECT COUNT(*) FROM generation_failures").fetchone()[0]
        return {
            "samples": samples,
            "tokens": tokens,
            "verified": verified,
            "generation_failures": failures,
            "infra_errors": infra,
        }

    @_reads
    def verified_since(self, since: float) -> int:
        """Samples verified after the unix time `since` (for the rate in `engine status`)."""
        return self._db.execute("SELECT COUNT(*) FROM samples WHERE verified_at > ?", (since,)).fetchone()[0]

    @_reads
    def last_verified_at(self) -> float | None:
        """Unix time of the latest verdict (how long a run has made no progress)."""
        return self._db.execute("SELECT MAX(verified_at) FROM samples").fetchone()[0]

    @_reads
    def rows(self) -> Iterator[dict]:
        """Every sample with its verdict, in problem order then sample order (for export)."""
        cursor = self._db.execute(
            "SELECT s.*, COALESCE(p.kind, ?) AS task_kind FROM samples s LEFT JOIN problems p USING (task_id)"
            " ORDER BY COALESCE(p.position, 1e9), s.task_id, s.sample_index",
            (LEGACY_KIND,),
        )
        names = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(names, row))


class _Transaction:
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
