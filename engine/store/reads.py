"""The store's reads: meta, problems, what is left to do, and the counts the summaries and the
metrics are made of; each says a damaged file in one line (`reads`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from engine.records import Problem, Sample
from engine.store.schema import reads
from engine.summary import INFRA_ERROR  # not a verdict about the program: the sandbox failed
from engine.tasks import LEGACY_KIND, legacy_problem


class StoreReads:
    """Store's reading half (engine/store/store.py)."""

    path: Path
    _db: sqlite3.Connection

    @reads
    def get_meta(self, key: str) -> object | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    @reads
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

    @reads
    def generated_indices(self) -> dict[str, set[int]]:
        """Sample indices already generated (verified or not), per problem."""
        done: dict[str, set[int]] = {}
        for task_id, index in self._db.execute("SELECT task_id, sample_index FROM samples"):
            done.setdefault(task_id, set()).add(index)
        return done

    @reads
    def unverified(self) -> Iterator[Sample]:
        rows = self._db.execute(
            "SELECT task_id, sample_index, completion, completion_tokens, finish_reason, server, requested_at,"
            " first_token_at, finished_at, response FROM samples WHERE verdict IS NULL OR verdict = ?"
            " ORDER BY task_id, sample_index",
            (INFRA_ERROR,),
        ).fetchall()
        return (Sample(*row) for row in rows)

    @reads
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

    @reads
    def pass_counts(self) -> dict[str, tuple[int, int]]:
        """(n verified, c passed) per problem; infrastructure errors are not in n."""
        rows = self._db.execute(
            "SELECT task_id, COUNT(*), SUM(verdict = 'passed') FROM samples WHERE verdict IS NOT NULL AND verdict != ?"
            " GROUP BY task_id",
            (INFRA_ERROR,),
        )
        return {task: (n, int(c)) for task, n, c in rows}

    @reads
    def test_counts(self) -> dict[str, float | int] | None:
        """Over the verified samples of multi-test kinds: how many, the mean fraction of tests
        passed (the RL reward), and for EvalPlus-style ones how many passed the base suite;
        None when the run has none (HumanEval, MBPP)."""
        samples, mean, base_judged, base_passed = self._db.execute(
            "SELECT COUNT(*), AVG(CAST(tests_passed AS REAL) / tests_total), COUNT(base_passed),"
            " COALESCE(SUM(base_passed), 0) FROM samples"
            " WHERE verdict IS NOT NULL AND verdict != ? AND tests_total > 0",
            (INFRA_ERROR,),
        ).fetchone()
        if not samples:
            return None
        return {
            "samples": samples,
            "mean_fraction_passed": round(mean, 6),
            "base_judged": base_judged,
            "base_passed": base_passed,
        }

    @reads
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

    @reads
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

    @reads
    def verified_since(self, since: float) -> int:
        """Samples verified after the unix time `since` (for the rate in `engine status`)."""
        return self._db.execute("SELECT COUNT(*) FROM samples WHERE verified_at > ?", (since,)).fetchone()[0]

    @reads
    def last_verified_at(self) -> float | None:
        """Unix time of the latest verdict (how long a run has made no progress)."""
        return self._db.execute("SELECT MAX(verified_at) FROM samples").fetchone()[0]

    @reads
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
