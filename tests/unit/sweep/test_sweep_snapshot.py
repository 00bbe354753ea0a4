"""One snapshot, three readers: the progress line, the Prometheus sweep state and the live
page's /api/state show the same facts, because they read the same Snapshot."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sweep_fakes import ScriptedClient, make_sweep, run

from engine.progress import line
from engine.store import Store
from engine.sweep.snapshot import RATE_WINDOW_S, STALL_AFTER_S, Meter, ServerView, Snapshot
from metrics.exporter import EngineMetrics
from metrics.page import PageData
from metrics.running import RunningPassAtK
from metrics.sweep_state import STATES, SweepState, SweepStateCollector

counts = st.integers(0, 10_000)
snapshots = st.builds(
    Snapshot,
    state=st.sampled_from(STATES),
    target=counts,
    verified=counts,
    problems=st.integers(0, 200),
    solved=st.integers(0, 200),
    pass_at_1=st.none() | st.floats(0, 1),
    tokens=counts,
    samples_per_s=st.floats(0, 1e4),
    tokens_per_s=st.floats(0, 1e6),
    fleet=st.lists(
        st.builds(
            ServerView,
            st.sampled_from(["http://a", "http://b", "http://c"]),
            st.booleans(),
            st.integers(0, 9),
        ),
        max_size=3,
        unique_by=lambda s: s.url,
    ).map(tuple),
    queue_depth=counts,
    queue_held=counts,
    queue_capacity=counts,
    no_progress_s=st.floats(0, 1e5),
)


class Frozen:
    """A sweep as its readers see it: through snapshot()."""

    def __init__(self, snap: Snapshot):
        self.snap = snap

    def snapshot(self) -> Snapshot:
        return self.snap


def _readers(directory: Path):
    store = Store.open(directory)
    running = RunningPassAtK()
    state = SweepState(
        run_id="r",
        info={"run_id": "r"},
        problems=[],
        samples=0,
        running=running,
        store_path=store.path,
        max_age_s=0,
    )
    registry = CollectorRegistry()
    registry.register(SweepStateCollector(state))
    page = PageData(state, EngineMetrics(CollectorRegistry(), running), max_age_s=0)
    return store, state, registry, page


@settings(max_examples=40, deadline=None)
@given(snap=snapshots)
def test_the_line_the_metrics_and_the_page_agree_on_one_snapshot(snap):
    """Invariant: for any snapshot, the progress line, the engine_sweep_* gauges and /api/state
    show the same verified, target, remaining, state, queue, servers up and stall."""
    with tempfile.TemporaryDirectory() as tmp:
        store, state, registry, page = _readers(Path(tmp))
        state.sweep = Frozen(snap)
        try:
            shown = page.snapshot()
            gauge = registry.get_sample_value
        finally:
            page.close()
            state.close()
            store.close()
    text = line(snap)
    assert text.startswith(f"verified {snap.verified}/{snap.target} ")
    assert shown["verified"] == gauge("engine_sweep_verified_samples") == snap.verified
    assert shown["target"] == gauge("engine_sweep_target_samples") == snap.target
    assert shown["remaining"] == gauge("engine_sweep_remaining_samples") == snap.remaining
    assert shown["solved"] == gauge("engine_sweep_problems_solved") == snap.solved
    assert shown["state"] == snap.state and gauge("engine_sweep_state", {"state": snap.state}) == 1
    assert shown["queue_held"] == gauge("engine_queue_held") == snap.queue_held
    assert shown["queue_capacity"] == gauge("engine_queue_capacity") == snap.queue_capacity
    assert shown["queue_depth"] == snap.queue_depth and shown["tokens"] == snap.tokens
    assert sum(s["up"] for s in shown["servers"]) == snap.servers_up and len(shown["servers"]) == snap.servers
    assert (f"servers up {snap.servers_up}/{snap.servers}" in text) == bool(snap.servers)
    assert (f"queue {snap.queue_depth}," in text) == bool(snap.servers)
    assert shown["stalled"] == snap.stalled == ("no progress for" in text)
    assert shown["no_progress_s"] == snap.no_progress_s
    assert text.endswith("ETA ?") or not snap.stalled


def test_a_sweep_snapshot_counts_what_the_sweep_did():
    """Invariant: after a sweep of P problems x S samples with no fault, its snapshot shows all
    of them verified, the tokens received, nothing held or queued, and servers up."""
    sweep = make_sweep(problem_count=3, samples=5, client=ScriptedClient(), request_n=2)
    run(sweep)
    snap = sweep.snapshot()
    assert (snap.target, snap.verified, snap.remaining, snap.problems) == (15, 15, 0, 3)
    assert snap.solved == 3 and snap.pass_at_1 is not None and 0 < snap.pass_at_1 < 1
    assert snap.tokens == 2 * 15 == sweep.stats.tokens
    assert (snap.queue_held, snap.queue_depth, snap.servers_up, snap.servers) == (0, 0, 2, 2)
    assert snap.state == "finished" and not snap.stalled and snap.eta_s == 0


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0.0, 20.0), st.integers(0, 50)), max_size=40))
def test_rates_fall_to_zero_after_a_window_of_silence(steps):
    """Invariant: rates are never negative, and once nothing happened for a whole window the
    rate is 0, whatever came before (readings at any gaps, including none at all)."""
    now, verified = 0.0, 0
    meter = Meter(now, verified)
    silent_since = now
    for gap, more in steps:
        now += gap
        rate, _ = meter.rates(now, verified, 0)
        assert rate >= 0
        if now - silent_since >= RATE_WINDOW_S + 1e-9 and rate:
            raise AssertionError(f"a rate of {rate}/s after {now - silent_since} s of silence")
        if more:
            verified += more
            meter.rates(now, verified, 0)
            silent_since = now
    assert STALL_AFTER_S < RATE_WINDOW_S  # a stall shows before the rate has fallen
