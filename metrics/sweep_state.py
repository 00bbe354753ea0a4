"""Where a sweep stands, for Prometheus and the live page: read at scrape time from the running
sweep's `Snapshot` (engine/sweep/snapshot.py: the same facts the progress line shows; before
the sweep starts, from the running counts seeded from the store) and from the store itself, so
the figures survive resumes where the engine's counters restart at zero.

The store is read through a connection of its own, read-only (SQLite's WAL lets it read while
the sweep writes), and at most once per `max_age_s`: the page polls and Prometheus scrapes, the
sweep should not notice either.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily

from engine.sweep.snapshot import Snapshot, progress_of
from metrics.running import RunningPassAtK
from sandbox.verdicts import Verdict

STATES = ("running", "draining", "finished", "stopped")
JAIL_ROLES = ("verify", "confirm")  # sandbox/forkserver/backend.py: ForkServerBackend.jail_counts
JAIL_STATES = ("busy", "idle", "restarting", "broken")
INFRA_ERROR = Verdict.infra_error.value  # the sandbox failed: not a verdict
_STORED = (
    "generation_failures",
    "infra_errors",
    "last_progress",
)  # a row's result when the sandbox, not the program, kept failing


def ensure_run_id(store) -> str:
    """The run's id in its store: made once, kept across resumes; --new-run starts a new store."""
    run_id = store.get_meta("run_id")
    if run_id is None:
        run_id = uuid.uuid4().hex[:12]
        store.set_meta("run_id", run_id)
    return run_id


def sampling_hash(sampling: dict) -> str:
    return hashlib.sha256(json.dumps(sampling, sort_keys=True).encode()).hexdigest()[:12]


class LiveSweep(Protocol):
    def snapshot(self) -> Snapshot: ...


class SweepState:
    """The figures of one sweep: its identity, what its store holds, and, while it runs, the
    live figures of its `Snapshot`. `phase`, `sweep` and `jails` are set by whoever runs it."""

    def __init__(
        self,
        *,
        run_id: str,
        info: dict[str, str],
        problems: list[str],
        samples: int,
        running: RunningPassAtK,
        store_path: Path,
        max_age_s: float = 1.0,
    ):
        self.run_id = run_id
        self.info = info  # model, dataset, task, sampling_hash
        self.problems = problems
        self.samples = samples
        self.running = running
        self._phase = "running"
        self.sweep: LiveSweep | None = None  # the running sweep, read through its snapshot
        self._live: Snapshot | None = None
        self.jails: Callable[[], dict[str, dict[str, int]]] = dict  # the SandboxPool's `jails`, read live
        self._store_path = store_path
        self._db: sqlite3.Connection | None = None
        self._max_age_s = max_age_s
        self._cached: tuple[float, dict] | None = None

    @property
    def store_path(self) -> Path:
        return self._store_path

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, value: str) -> None:
        """running, then finished or stopped; the next read shows it with fresh figures."""
        self._phase = value
        self._cached = None

    @property
    def target(self) -> int:
        return len(self.problems) * self.samples

    def figures(self) -> dict:
        """Progress as numbers; computed at most once per max_age_s."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self._max_age_s:
            return self._cached[1]
        self._live = self.sweep.snapshot() if self.sweep is not None else None
        figures = {**self._progress(self._live), **self._from_store()}
        self._cached = (now, figures)
        return figures

    def live(self) -> Snapshot | None:
        """The sweep's snapshot behind the latest figures() (None before a sweep runs)."""
        return self._live

    def _progress(self, snap: Snapshot | None) -> dict:
        """The live figures: the sweep's snapshot while one runs; before, what the running
        counts (seeded from the store) say."""
        if snap is None:
            verified, solved = progress_of(self.running.counts(), self.problems)
            return {
                "state": self._phase,
                "target": self.target,
                "problems": len(self.problems),
                "verified": verified,
                "remaining": max(0, self.target - verified),
                "solved": solved,
                "queue_held": 0,
                "queue_capacity": 0,
            }
        return {
            "state": snap.state,
            "target": snap.target,
            "problems": snap.problems,
            "verified": snap.verified,
            "remaining": snap.remaining,
            "solved": snap.solved,
            "queue_held": snap.queue_held,
            "queue_capacity": snap.queue_capacity,
        }

    def _from_store(self) -> dict:
        try:
            return self._query_store()
        except sqlite3.Error:  # the store is busy or gone: keep what was last read
            return {k: self._cached[1][k] for k in _STORED} if self._cached else dict.fromkeys(_STORED, 0)

    def _query_store(self) -> dict:
        if self._db is None:
            self._db = sqlite3.connect(f"file:{self._store_path}?mode=ro", uri=True, check_same_thread=False)
        failures = self._db.execute("SELECT COUNT(*) FROM generation_failures").fetchone()[0]
        infra = self._db.execute("SELECT COUNT(*) FROM samples WHERE verdict = ?", (INFRA_ERROR,)).fetchone()[
            0
        ]
        last = self._db.execute("SELECT MAX(verified_at) FROM samples").fetchone()[0]
        return {"generation_failures": failures, "infra_errors": infra, "last_progress": last or 0.0}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class SweepStateCollector:
    """engine_sweep_* and engine_run_info, computed at scrape time from a SweepState."""

    def __init__(self, state: SweepState):
        self._state = state

    def describe(self):
        return []  # computed on demand: no need to collect at registration

    def collect(self):
        f = self._state.figures()
        yield _gauge(
            "engine_sweep_target_samples", "Samples the sweep wants (problems x samples)", f["target"]
        )
        yield _gauge(
            "engine_sweep_verified_samples", "Samples with a verdict, resumes included", f["verified"]
        )
        yield _gauge("engine_sweep_remaining_samples", "Samples still without a verdict", f["remaining"])
        yield _gauge("engine_sweep_problems", "Problems in the sweep", f["problems"])
        yield _gauge("engine_sweep_problems_solved", "Problems with at least one passing sample", f["solved"])
        yield _gauge(
            "engine_sweep_generation_failures",
            "Samples whose generation failed for good (retried on the next run)",
            f["generation_failures"],
        )
        yield _gauge(
            "engine_sweep_infra_errors",
            "Samples whose result is infra_error (retried on the next run)",
            f["infra_errors"],
        )
        yield _gauge(
            "engine_sweep_last_progress_timestamp_seconds",
            "Unix time of the latest verdict in the store",
            f["last_progress"],
        )
        yield _gauge(
            "engine_queue_held",
            "Samples admitted and not yet verified (streaming, queued, verifying)",
            f["queue_held"],
        )
        yield _gauge(
            "engine_queue_capacity",
            "Most samples held at once (--queue-size); admission waits beyond",
            f["queue_capacity"],
        )
        state = GaugeMetricFamily("engine_sweep_state", "1 for the sweep's current state", labels=["state"])
        for name in STATES:
            state.add_metric([name], 1.0 if f["state"] == name else 0.0)
        yield state
        yield _jails(self._state.jails())
        info = self._state.info
        family = GaugeMetricFamily("engine_run_info", "The run's identity (always 1)", labels=sorted(info))
        family.add_metric([info[k] for k in sorted(info)], 1.0)
        yield family


def _jails(counts: dict[str, dict[str, int]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "engine_sandbox_jails",
        "Sandbox jails by role (verify, or confirm: the reserved"
        " one) and state (busy, idle, restarting, broken)",
        labels=["role", "state"],
    )
    for role in JAIL_ROLES:
        for state in JAIL_STATES:  # zeros too: a pool that is not started yet has no jails
            family.add_metric([role, state], counts.get(role, {}).get(state, 0))
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
