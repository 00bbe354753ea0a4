"""What the live page and the Prometheus scrape cost the engine, per request, on a store the size
of a full sweep (164 problems x --samples, completions of HumanEval size, 10 servers).

Both run on the engine's event loop, so their CPU time is time the sweep does not get. Printed:
the CPU time of one uncached /api/state build, of one /metrics scrape (labelled, with the sweep
state read from the store), of the 5-second history sample, and the share of one core they take
at one open page polling every 2 s plus Prometheus scraping every 5 s (the shipped settings; the
page's store reads are redone every 5 s at most). The store's verdicts are spread over the last
15 minutes, so the last minute holds 1/15 of them.

    .venv/bin/python bench/page_cost.py [--samples 200] [--repeat 30]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.records import Sample  # noqa: E402
from engine.store import Store, StoredVerdict  # noqa: E402
from metrics.exporter import EngineMetrics  # noqa: E402
from metrics.http import RunLabelled  # noqa: E402
from metrics.page import STORE_MAX_AGE_S, PageData  # noqa: E402
from metrics.running import RunningPassAtK  # noqa: E402
from metrics.sweep_state import SweepState, SweepStateCollector  # noqa: E402

PROBLEMS, SERVERS = 164, 10
VERDICTS = ("passed", "failed", "failed", "timeout", "error")


def fill(store: Store, samples: int, running: RunningPassAtK) -> None:
    rng = random.Random(0)
    now = time.time()
    completion = "    result = []\n    for x in numbers:\n        result.append(x)\n" * 4  # ~200 bytes
    for p in range(PROBLEMS):
        for i in range(samples):
            verdict = rng.choice(VERDICTS)
            at = now - rng.uniform(0, 900)
            store.stage_sample(
                Sample(
                    f"HumanEval/{p}", i, completion, 130, "stop", f"http://gpu{i % SERVERS}:8000", at, at, at
                )
            )
            store.stage_verdict(
                StoredVerdict(
                    f"HumanEval/{p}", i, verdict, "", "", rng.uniform(0.01, 0.5), "nsjail", {"timeout_s": 2.0}
                )
            )
            running.add(f"HumanEval/{p}", verdict == "passed")
        store.flush()


def cpu_ms(action, repeat: int) -> float:
    start = time.process_time()
    for _ in range(repeat):
        action()
    return (time.process_time() - start) / repeat * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200, help="samples per problem")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(tmp)
        running = RunningPassAtK()
        fill(store, args.samples, running)
        registry = CollectorRegistry()
        metrics = EngineMetrics(registry, running)
        for s in range(SERVERS):
            url = f"http://gpu{s}:8000"
            metrics.server_up.labels(url).set(1)
            metrics.generated_tokens.labels(url).inc(1e6)
            metrics.inflight_requests.labels(url).set(20)
        info = {
            "run_id": "r",
            "model": "m",
            "dataset": "humaneval",
            "task": "humaneval",
            "sampling_hash": "h",
        }
        state = SweepState(
            run_id="r",
            info=info,
            problems=[f"HumanEval/{p}" for p in range(PROBLEMS)],
            samples=args.samples,
            running=running,
            store_path=store.path,
            max_age_s=0,
        )
        registry.register(SweepStateCollector(state))
        exposed = CollectorRegistry(auto_describe=False)
        exposed.register(RunLabelled(registry, "r"))
        page = PageData(state, metrics, max_age_s=0)
        full_ms = cpu_ms(page.snapshot, args.repeat)  # every part, the store reads included
        store_ms = cpu_ms(page._query_store, args.repeat)  # in a thread, off the event loop
        scrape_ms = cpu_ms(lambda: generate_latest(exposed), args.repeat)
        sample_ms = cpu_ms(lambda: (page._tokens(), state.figures()), args.repeat)
        # A page polls every 2 s (one build a second at most for any number of pages), the store
        # reads are redone every STORE_MAX_AGE_S, Prometheus scrapes and the history samples every 5 s.
        per_second = (
            (full_ms - store_ms) / 2.0 + store_ms / STORE_MAX_AGE_S + scrape_ms / 5.0 + sample_ms / 5.0
        )
        print(f"store: {PROBLEMS} problems x {args.samples} samples = {PROBLEMS * args.samples:,} rows")
        print(f"/api/state build: {full_ms:.2f} ms CPU, of which store reads {store_ms:.2f} ms")
        print(f"/metrics scrape (run_id labels, sweep state from the store): {scrape_ms:.2f} ms CPU")
        print(f"history sample (every 5 s): {sample_ms:.2f} ms CPU")
        print(f"one page polling every 2 s + Prometheus every 5 s: {per_second / 10:.2f} % of one core")
        page.close()
        state.close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
