"""The store's writes: run configuration and problems at once, samples, verdicts and generation
failures staged in memory and committed in batches by `flush()` (a crash loses at most the
last batch, generated or verified again on resume)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path

from engine.records import Problem, Sample
from engine.store.schema import Transaction
from engine.store.verdict import StoredVerdict


class StoreWrites:
    """Store's writing half (engine/store/store.py)."""

    path: Path
    _db: sqlite3.Connection

    def __init__(self) -> None:
        self._staged_samples: list[tuple] = []
        self._staged_verdicts: list[tuple] = []
        self._staged_failures: list[tuple] = []

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
                v.tests_passed,
                v.tests_total,
                None if v.base_passed is None else int(v.base_passed),
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
                " verified_at = ?, cpu_s = ?, reused = ?, tests_passed = ?, tests_total = ?, base_passed = ?"
                " WHERE task_id = ? AND sample_index = ?",
                verdicts,
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO generation_failures (task_id, sample_index, error, attempts, failed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                failures,
            )
        self._staged_samples, self._staged_verdicts, self._staged_failures = [], [], []

    def _transaction(self):
        return Transaction(self._db, self.path)
