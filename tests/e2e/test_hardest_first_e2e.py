"""`engine run --policy hardest-first` against the simulator, stopped part-way and resumed:
the order of its requests, read back from the store's timestamps, and what the report says."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass

import pytest
from fleet_process import ENGINE, simulated_fleet

PROBLEMS, SAMPLES = 8, 24


@dataclass(frozen=True)
class Row:
    task_id: str
    index: int
    requested_at: float
    verified_at: float
    passed: bool


@dataclass(frozen=True)
class RequestMade:
    task_id: str
    start: int
    requested_at: float


def read_rows(out) -> tuple[list[Row], dict[str, int]]:
    db = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True)
    try:
        rows = [
            Row(t, i, r, v, verdict == "passed")
            for t, i, r, v, verdict in db.execute(
                "SELECT task_id, sample_index, requested_at, verified_at, verdict FROM samples"
            )
        ]
        position = dict(db.execute("SELECT task_id, position FROM problems"))
    finally:
        db.close()
    return rows, position


def requests_of(rows: list[Row]) -> list[RequestMade]:
    """A request's samples share their requested_at (one stream); in the order they were made."""
    first = {}
    for r in sorted(rows, key=lambda r: (r.task_id, r.index)):
        first.setdefault((r.task_id, r.requested_at), r.index)
    return sorted(
        (RequestMade(t, start, at) for (t, at), start in first.items()), key=lambda q: q.requested_at
    )


def check_hardest_first(rows: list[Row], position: dict[str, int]) -> int:
    """Invariant: each request went to a problem whose (passes, samples, position) was the
    smallest among the problems that were ready (every verdict in) and unfinished when it was
    decided. The decision time d is not stored, only bounds: the dispatcher starts requests in
    the order it makes them, each just after its decision, so requests made before d are exactly
    those with an earlier requested_at; and d follows the last verdict of every problem chosen
    so far (each was ready). Only problems certainly ready by then are compared: what they had
    is then known exactly. Returns the number of comparisons made."""
    by_task: dict[str, list[Row]] = {}
    for r in rows:
        by_task.setdefault(r.task_id, []).append(r)
    decided_after = 0.0  # a lower bound on the decision time, growing request by request
    compared = 0
    for q in requests_of(rows):
        before = [r for r in by_task[q.task_id] if r.index < q.start]
        decided_after = max([decided_after] + [r.verified_at for r in before])
        chosen = (sum(r.passed for r in before), len(before), position[q.task_id])
        for task, samples in by_task.items():
            if task == q.task_id:
                continue
            issued = [r for r in samples if r.requested_at < q.requested_at]
            unfinished = len(issued) < len(samples)
            if unfinished and all(r.verified_at <= decided_after for r in issued):
                other = (sum(r.passed for r in issued), len(issued), position[task])
                assert chosen < other, (q, task, chosen, other)
                compared += 1
    return compared


def run_engine(hosts, out, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *ENGINE,
            "run",
            "--servers",
            str(hosts),
            "--samples",
            str(SAMPLES),
            "--limit",
            str(PROBLEMS),
            "--out",
            str(out),
            "--metrics-port",
            "0",
            "--workers",
            "2",
            "--request-n",
            "4",
            "--seed",
            "3",
            "--policy",
            "hardest-first",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def verified(out) -> int:
    try:
        db = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True)
        try:
            return db.execute("SELECT COUNT(*) FROM samples WHERE verdict IS NOT NULL").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0  # not created yet


def report_json(out) -> dict:
    done = subprocess.run(
        [*ENGINE, "report", str(out), "--json", "--no-plot", "--bootstrap", "50"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.timeout(600)
def test_hardest_first_run_stopped_and_resumed(tmp_path):
    """A hardest-first sweep (8 problems x 24 samples, requests of 1, 2, 4 samples) is stopped
    by SIGINT once a third of its samples have verdicts, reported, then resumed to the end.
    Each request went to a ready problem with the fewest passes (check_hardest_first); part-way
    the report says Chen's estimator is biased and headlines the likelihood; at the end every
    sample of the target is stored exactly once and Chen's estimate is unbiased again."""
    out = tmp_path / "run"
    with simulated_fleet(tmp_path, 2, 2_000) as hosts:
        process = run_engine(hosts, out)
        deadline = time.monotonic() + 240
        while (
            verified(out) < PROBLEMS * SAMPLES // 3 and process.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        rows, position = read_rows(out)
        assert PROBLEMS * SAMPLES // 3 <= len(rows) < PROBLEMS * SAMPLES, "stopped part-way"

        partial = report_json(out)
        assert partial["policy"]["name"] == "hardest-first"
        assert (
            partial["estimate"]["headline"] == "beta_binomial"
            and partial["estimate"]["chen_unbiased"] is False
        )
        assert "biased" in partial["estimate"]["note"]

        resumed = run_engine(hosts, out)
        _, stderr = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, stderr

    rows, position = read_rows(out)
    tasks = {r.task_id for r in rows}
    keys = sorted((r.task_id, r.index) for r in rows)
    assert len(tasks) == PROBLEMS and keys == sorted((t, i) for t in tasks for i in range(SAMPLES)), (
        "every sample once"
    )
    assert all(r.verified_at is not None for r in rows)
    compared = check_hardest_first(rows, position)
    print(f"{compared} comparisons, {len(requests_of(rows))} requests")
    assert compared >= PROBLEMS  # at least the first round, where all tie at 0
    final = report_json(out)
    assert final["samples"] == PROBLEMS * SAMPLES and final["n"] == SAMPLES
    assert final["estimate"]["headline"] == "chen" and final["estimate"]["chen_unbiased"] is True
