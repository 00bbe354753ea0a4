"""One run's samples, read from its store, arranged per problem for the report."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.analysis.estimators import VERDICTS
from engine.errors import InputError
from engine.store import DAMAGE, DB_NAME


@dataclass(slots=True)
class ProblemSamples:
    """One problem's verified samples in sample order (only the five verdicts count in n)."""

    task_id: str
    indices: list[int] = field(default_factory=list)
    passed: list[bool] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)  # of samples that ran (not reused)
    cpu_s: list[float] = field(default_factory=list)
    results: dict[str, int] = field(default_factory=dict)  # every result, infra_error too
    # Per counted sample, None when the run's kind has no such figure (or its store predates them):
    base_passed: list[bool | None] = field(default_factory=list)  # EvalPlus-style: the base suite alone
    fraction: list[float | None] = field(default_factory=list)  # multi-test kinds: tests passed / tests
    unique_completions: int = 0

    @property
    def n(self) -> int:
        return len(self.passed)

    @property
    def c(self) -> int:
        return sum(self.passed)

    def first_pass(self) -> int | None:
        """sample_index of the first passing sample."""
        return next((i for i, ok in zip(self.indices, self.passed) if ok), None)


@dataclass(slots=True)
class Run:
    out: str
    sampling: dict
    target: dict
    problems: list[ProblemSamples]
    limits: dict  # each sandbox limit's smallest and largest value over the run
    backends: list[str]
    started: float | None
    finished: float | None
    policy: dict  # how samples were allotted: {"name": "uniform" | "until-solved" | "hardest-first", "stop_after"}

    def counted(self) -> list[ProblemSamples]:
        """Problems with at least one sample that counts in pass@k."""
        return [p for p in self.problems if p.n]

    def outcomes(self) -> list[np.ndarray]:
        return [np.array(p.passed, dtype=bool) for p in self.counted()]


def _connect(out: Path) -> sqlite3.Connection:
    db = out / DB_NAME
    if not db.is_file():
        raise InputError(f"{out} holds no run (no {DB_NAME})")
    try:
        return sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputError(f"{db} is not a usable results store: {exc}") from exc


def _meta(db: sqlite3.Connection, key: str) -> dict:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else {}


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _problems(db: sqlite3.Connection) -> list[ProblemSamples]:
    by_task: dict[str, ProblemSamples] = {}
    # read-only: a store written before the test counts existed lacks their columns
    tests = (
        "s.base_passed, s.tests_passed, s.tests_total"
        if {"base_passed", "tests_total"} <= _columns(db, "samples")
        else "NULL, NULL, NULL"
    )
    rows = db.execute(
        "SELECT s.task_id, s.sample_index, s.verdict, s.completion_tokens, s.verify_wall_s, s.cpu_s, s.reused,"
        f" {tests} FROM samples s LEFT JOIN problems p USING (task_id) WHERE s.verdict IS NOT NULL"
        " ORDER BY COALESCE(p.position, 1e9), s.task_id, s.sample_index"
    )
    for task_id, index, verdict, tokens, wall, cpu, reused, base, passed, total in rows:
        p = by_task.setdefault(task_id, ProblemSamples(task_id))
        p.results[verdict] = p.results.get(verdict, 0) + 1
        if verdict not in VERDICTS:
            continue
        p.indices.append(index)
        p.passed.append(verdict == "passed")
        p.tokens.append(tokens)
        p.base_passed.append(None if base is None else bool(base))
        p.fraction.append(passed / total if total else None)
        if not reused and wall is not None:
            p.wall_s.append(wall)
            p.cpu_s.append(cpu if cpu is not None else np.nan)
    verdict_list = ",".join(f"'{v}'" for v in VERDICTS)
    for task_id, unique in db.execute(
        f"SELECT task_id, COUNT(DISTINCT completion) FROM samples WHERE verdict IN ({verdict_list}) GROUP BY task_id"
    ):
        by_task[task_id].unique_completions = unique
    return list(by_task.values())


def _limits(db: sqlite3.Connection) -> tuple[dict, list[str]]:
    ranges: dict[str, list] = {}
    backends = set()
    for limits, backend in db.execute(
        "SELECT DISTINCT limits, backend FROM samples WHERE verdict IS NOT NULL"
    ):
        backends.add(backend)
        for key, value in (json.loads(limits) if limits else {}).items():
            if value is None:  # a limit not set (no CPU limit): no range to show
                continue
            low, high = ranges.get(key, (value, value))
            ranges[key] = [min(low, value), max(high, value)]
    return ranges, sorted(b for b in backends if b)


def load_run(run_dir: str) -> Run:
    out = Path(run_dir)
    db = _connect(out)
    try:
        limits, backends = _limits(db)
        started, finished = db.execute("SELECT MIN(requested_at), MAX(verified_at) FROM samples").fetchone()
        return Run(
            str(out),
            _meta(db, "sampling"),
            _meta(db, "target"),
            _problems(db),
            limits,
            backends,
            started,
            finished,
            _meta(db, "policy") or {"name": "uniform"},
        )
    except DAMAGE as exc:  # a damaged page can also make sqlite3's own message undecodable
        raise InputError(f"{out / DB_NAME} is not a usable results store: {exc}") from exc
    finally:
        db.close()
