"""The live page's data: one JSON object with where the sweep stands, built from the same
SweepState as the engine_sweep_* gauges plus the engine's own metrics and a few indexed store
reads (the verdict mix, the last minute's rate and verification times, the latest generation
failures). Cached for `max_age_s` (the store reads for STORE_MAX_AGE_S, and done in a thread off
the event loop), so any number of open pages costs one build per second at most:
bench/page_cost.py measures it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque

import orjson

from engine.status import RATE_WINDOW_S
from engine.sweep.snapshot import STALL_AFTER_S, Snapshot
from metrics.exporter import EngineMetrics
from metrics.sweep_state import SweepState

LIST_LENGTH = 10  # rows in each problem list
UNSOLVED_SHOWN = 50
SLOW_WINDOW_S = 60.0  # "slowest problems" looks at the verdicts of the last minute
STORE_MAX_AGE_S = 5.0  # the store reads scan up to a minute of verdicts: not more often than this
HISTORY_EVERY_S = 5.0  # the throughput charts: a point every 5 s, the last hour
HISTORY_POINTS = 720


class PageData:
    def __init__(self, state: SweepState, metrics: EngineMetrics, max_age_s: float = 1.0):
        self._state = state
        self._metrics = metrics
        self._max_age_s = max_age_s
        self._cached: tuple[float, dict] | None = None
        self._stored: tuple[float, dict] | None = None
        self._reading = asyncio.Lock()
        self._db: sqlite3.Connection | None = None
        self._history: deque[tuple[float, float, int]] = deque(
            maxlen=HISTORY_POINTS
        )  # (time, tokens, verified)

    async def record_history(self, every_s: float = HISTORY_EVERY_S) -> None:
        """Sample the counters for the charts, whether a page is open or not (so a page opened
        late shows the past hour at once); runs until cancelled."""
        while True:
            self._history.append((time.time(), self._tokens(), self._state.figures()["verified"]))
            await asyncio.sleep(every_s)

    def history(self, since: float = 0.0) -> list[tuple[float, float, int]]:
        """Chart points after `since` (unix time): a page asks for all once, then for what is new."""
        return [point for point in self._history if point[0] > since]

    async def snapshot_async(self) -> dict:
        """snapshot(), with the store read in a thread: a long read does not hold up the sweep."""
        async with self._reading:
            if self._store_is_stale():
                self._stored = (time.monotonic(), await asyncio.to_thread(self._read_store))
        return self.snapshot()

    def snapshot(self) -> dict:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= self._max_age_s:
            self._cached = (now, self._build())
        return self._cached[1]

    def _build(self) -> dict:
        state = self._state
        figures = state.figures()
        live = state.live()  # the snapshot behind these figures: one reading for the whole page
        counts = state.running.counts()
        wanted = {t: counts.get(t, (0, 0)) for t in state.problems}
        return {
            "now": time.time(),
            "run_id": state.run_id,
            "info": state.info,
            **figures,
            "samples_per_problem": state.samples,
            "stall_after_s": STALL_AFTER_S,
            "queue_depth": live.queue_depth if live else _value(self._metrics.queue_depth),
            "tokens": live.tokens if live else self._tokens(),
            "pass_at_k": {str(k): v for k, v in state.running.scores().items()},
            "servers": self._servers(live),
            "jails": state.jails(),
            "dedup_hits": _value(self._metrics.verify_dedup),
            "unsolved": [t for t, (_, c) in wanted.items() if c == 0][:UNSOLVED_SHOWN],
            "unsolved_count": sum(1 for _, c in wanted.values() if c == 0),
            "most_failing": _most_failing(wanted),
            **self._with_eta(self._from_store(), figures, live),
        }

    def _stall(self, stored: dict, figures: dict, live: Snapshot | None) -> dict:
        """No progress as the sweep's snapshot counts it; with no sweep running here, as `engine
        status` counts it: since the latest verdict in the store, or since the running process
        started (its heartbeat) if that is later, stalled after STALL_AFTER_S while running with
        work left."""
        if live is not None:
            return {"no_progress_s": live.no_progress_s, "stalled": live.stalled}
        since = max(figures["last_progress"], stored.get("started") or 0.0)
        idle = round(max(0.0, time.time() - since), 1) if since else None
        stalled = (
            figures["state"] == "running"
            and figures["remaining"] > 0
            and idle is not None
            and idle >= STALL_AFTER_S
        )
        return {"no_progress_s": idle, "stalled": stalled}

    def _with_eta(self, stored: dict, figures: dict, live: Snapshot | None) -> dict:
        """The rate and ETA of `engine status`: verdicts of the last minute, from the store."""
        stored = {**stored, **self._stall(stored, figures, live)}
        stored.pop("started", None)
        recent = stored.pop("recent")
        rate = None if recent is None else recent / RATE_WINDOW_S
        remaining = figures["remaining"]
        return {
            **stored,
            "rate_per_s": rate,
            "eta_s": 0 if not remaining else remaining / rate if rate else None,
        }

    def _tokens(self) -> float:
        return sum(_by_label(self._metrics.generated_tokens, "server").values())

    def _servers(self, live: Snapshot | None) -> list[dict]:
        """Each server: up and in flight from the sweep's snapshot (from the gauges when no sweep
        runs here), its tokens and errors from the counters."""
        tokens = _by_label(self._metrics.generated_tokens, "server")
        errors = _by_label(self._metrics.generation_errors, "server")
        if live is not None:
            fleet = {s.url: (s.up, s.inflight) for s in live.fleet}
        else:
            up = _by_label(self._metrics.server_up, "server")
            inflight = _by_label(self._metrics.inflight_requests, "server")
            urls = up.keys() | inflight.keys() | tokens.keys()
            fleet = {url: (bool(up.get(url)), int(inflight.get(url, 0))) for url in urls}
        return [
            {
                "url": url,
                "up": up_now,
                "inflight": inflight_now,
                "tokens": tokens.get(url, 0),
                "errors": errors.get(url, 0),
            }
            for url, (up_now, inflight_now) in sorted(fleet.items())
        ]

    def _store_is_stale(self) -> bool:
        max_age = min(STORE_MAX_AGE_S, self._max_age_s * 5)
        return self._stored is None or time.monotonic() - self._stored[0] >= max_age

    def _from_store(self) -> dict:
        stored = self._stored
        if stored is None or self._store_is_stale():
            stored = self._stored = (time.monotonic(), self._read_store())
        return stored[1]

    def _read_store(self) -> dict:
        try:
            return self._query_store()
        except sqlite3.Error:  # busy or gone: the page shows the rest
            return (
                self._stored[1]
                if self._stored
                else {"verdicts": {}, "slowest": [], "recent_errors": [], "recent": None}
            )

    def _query_store(self) -> dict:
        if self._db is None:
            self._db = sqlite3.connect(
                f"file:{self._state.store_path}?mode=ro", uri=True, check_same_thread=False
            )
        db = self._db
        now = time.time()
        recent = db.execute(
            "SELECT COUNT(*) FROM samples WHERE verified_at > ?", (now - RATE_WINDOW_S,)
        ).fetchone()[0]
        verdicts = dict(
            db.execute("SELECT verdict, COUNT(*) FROM samples WHERE verdict IS NOT NULL GROUP BY verdict")
        )
        slowest = db.execute(
            "SELECT task_id, AVG(verify_wall_s), COUNT(*) FROM samples WHERE verified_at > ? AND COALESCE(reused, 0) = 0"
            " GROUP BY task_id ORDER BY 2 DESC LIMIT ?",
            (now - SLOW_WINDOW_S, LIST_LENGTH),
        ).fetchall()
        errors = db.execute(
            "SELECT task_id, sample_index, error, failed_at FROM generation_failures ORDER BY failed_at DESC LIMIT ?",
            (LIST_LENGTH,),
        ).fetchall()
        beat = db.execute("SELECT value FROM meta WHERE key = 'heartbeat'").fetchone()
        return {
            "started": float(orjson.loads(beat[0]).get("started") or 0.0) if beat else 0.0,
            "recent": recent,
            "verdicts": verdicts,
            "slowest": [{"task": t, "mean_s": s, "n": n} for t, s, n in slowest],
            "recent_errors": [{"task": t, "index": i, "error": e, "at": at} for t, i, e, at in errors],
        }

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _most_failing(counts: dict[str, tuple[int, int]]) -> list[dict]:
    """The problems that fail most often among those with samples: lowest pass rate, then most samples."""
    tried = [(c / n, -n, t) for t, (n, c) in counts.items() if n]
    return [
        {"task": t, "n": -neg_n, "passed": round(rate * -neg_n)}
        for rate, neg_n, t in sorted(tried)[:LIST_LENGTH]
    ]


def _by_label(metric, label: str) -> dict[str, float]:
    return {
        s.labels[label]: s.value
        for family in metric.collect()
        for s in family.samples
        if label in s.labels and not s.name.endswith("_created")
    }


def _value(metric) -> float:
    return next(s.value for family in metric.collect() for s in family.samples)
