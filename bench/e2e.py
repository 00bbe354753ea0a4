"""End to end: a full HumanEval sweep with verification against the default simulated fleet.

`engine simulate` (10 servers x 4,000 tok/s = 40k tok/s offered, its own process) and
`engine run` (its own process) over all 164 problems x --samples. Every --every seconds it
scrapes the engine's /metrics and reads /proc: achieved tokens/s, samples/s generated and
verified, queue depth, the engine's CPU (its own process, not the sandboxes). At the end it
reads the store for the verification lag (generation finished -> verdict) and prints the
sustained figures over the steady part of the run: from the first full interval with tokens to
the last interval that ended before the engine sent its last request. After that the fleet only
drains (fewer requests left than servers can serve), whatever the engine does; before it, a
slow engine shows as lost tokens/s.

Target on the 2-core box: >= 99 % of the offered tokens/s sustained, verification keeping pace
(the queue bounded, lag p99 under 2 s) and the engine process under one core.

    .venv/bin/python bench/e2e.py                    # 164 x 200 samples
    .venv/bin/python bench/e2e.py --samples 500 --every 2
    .venv/bin/python bench/e2e.py --samples 40 -- --cpu-time-floor 0.25   # engine options after --
    .venv/bin/python bench/e2e.py --samples 40 -- --short-cpu-limit 0.05  # loops last (sandbox/verifier.py)

Busy loops cost their CPU-time limit each (1 s by default): the "sandbox CPU" line says how much
of the sandboxes' time went there, which is what decides whether a small sweep keeps pace.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from procstat import cpu_seconds, peak_rss_mb, rss_mb  # noqa: E402
from simfleet import metric, start_engine, start_simulator, stop  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200, help="samples per problem")
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--tokens-per-second", type=int, default=4000, help="per server")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between observations")
    parser.add_argument("--workers", type=int, help="sandbox workers (default: the engine's, two per core)")
    parser.add_argument("engine_args", nargs="*", help="more `engine run` options, after --")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="engine-e2e-"))
    hosts = work / "hosts.txt"
    offered = args.servers * args.tokens_per_second
    simulator = engine = None
    try:
        simulator = start_simulator(hosts, args.servers, args.tokens_per_second)
        engine, port = start_engine(hosts, args.samples, work, args.workers, args.engine_args)
        rows = observe(engine, port, args.every)
        if engine.wait() != 0:
            print(f"e2e: the engine failed; see {work / 'engine.log'}", file=sys.stderr)
            return 1
        report(
            rows, work / "run" / "results.sqlite", offered, engine_peak=rows[-1]["peak_rss"] if rows else 0.0
        )
        print(f"e2e: run directory {work}", file=sys.stderr)
        return 0
    finally:
        stop(engine, simulator)


def observe(engine: subprocess.Popen, port: int, every: float) -> list[dict]:
    print(
        f"{'s':>6} {'tok/s':>8} {'gen/s':>7} {'ver/s':>7} {'queue':>6} {'CPU %':>6} {'RSS MB':>7}", flush=True
    )
    rows: list[dict] = []
    start = last_t = time.monotonic()
    last = {"tokens": 0.0, "generated": 0.0, "verified": 0.0, "cpu": cpu_seconds(engine.pid)}
    while True:
        time.sleep(every)
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            now, cpu, rss, peak = (
                time.monotonic(),
                cpu_seconds(engine.pid),
                rss_mb(engine.pid),
                peak_rss_mb(engine.pid),
            )
        except (OSError, ValueError):
            return rows  # the engine has finished and closed its endpoint
        current = {
            "tokens": metric(text, "engine_generated_tokens_total"),
            "generated": metric(text, "engine_samples_generated_total"),
            "verified": metric(text, "engine_samples_verified_total"),
            "cpu": cpu,
        }
        dt = now - last_t
        row = {key + "_rate": (current[key] - last[key]) / dt for key in current}
        row.update(
            interval=dt,
            t=now - start,
            wall=time.time(),  # to compare with the store's timestamps (time.time())
            queue=metric(text, "engine_queue_depth"),
            rss=rss,
            peak_rss=peak,
            **current,
        )
        rows.append(row)
        print(
            f"{row['t']:6.1f} {row['tokens_rate']:8,.0f} {row['generated_rate']:7,.0f} {row['verified_rate']:7,.0f}"
            f" {row['queue']:6.0f} {100 * row['cpu_rate']:6.1f} {rss:7.1f}",
            flush=True,
        )
        last, last_t = current, now


def report(rows: list[dict], db: Path, offered: int, engine_peak: float) -> None:
    connection = sqlite3.connect(db)
    (last_request,) = connection.execute("SELECT MAX(requested_at) FROM samples").fetchone()
    # Steady state: from the first full interval with tokens (the one before it holds the ramp-up)
    # to the last one that ended before the last request was sent (the drain comes after).
    generating = [r for r in rows if r["tokens_rate"] > 0]
    steady = [r for r in generating[1:] if r["wall"] <= (last_request or 0.0)]
    if not steady:
        print("e2e: too short to measure; use more --samples or a smaller --every")
        return
    span = sum(r["interval"] for r in steady)
    tokens = sum(r["tokens_rate"] * r["interval"] for r in steady) / span
    lags = sorted(
        row[0]
        for row in connection.execute(
            "SELECT verified_at - finished_at FROM samples WHERE verified_at IS NOT NULL"
        )
    )
    # The samples that did not loop: what loops-last (sandbox/verifier.py) keeps from waiting.
    quick_lags = sorted(
        row[0]
        for row in connection.execute(
            "SELECT verified_at - finished_at FROM samples WHERE verified_at IS NOT NULL"
            " AND COALESCE(detail, '') NOT LIKE 'CPU-time limit%'"
        )
    )
    reused = connection.execute("SELECT COUNT(*), SUM(reused) FROM samples").fetchone()
    # Where the sandboxes' CPU went: samples stopped at their CPU-time limit against the rest.
    spent = connection.execute(
        "SELECT COUNT(*), COALESCE(SUM(cpu_s), 0),"
        " COALESCE(SUM(CASE WHEN detail LIKE 'CPU-time limit%' THEN cpu_s END), 0),"
        " COUNT(CASE WHEN detail LIKE 'CPU-time limit%' THEN 1 END)"
        " FROM samples WHERE reused = 0 AND verified_at IS NOT NULL"
    ).fetchone()
    connection.close()

    def pct(q: float, values: list[float] = lags) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    print(f"\nsteady state over {span:.0f} s ({len(steady)} observations):")
    print(f"  tokens/s        {tokens:10,.0f}   ({tokens / offered:.1%} of {offered:,} offered)")
    print(f"  generated/s     {statistics.mean(r['generated_rate'] for r in steady):10,.1f}")
    print(
        f"  verified/s      {statistics.mean(r['verified_rate'] for r in steady):10,.1f}"
        f"   ({(reused[1] or 0) / max(1, reused[0]):.0%} of all verdicts reused by dedup)"
    )
    print(
        f"  queue depth     max {max(r['queue'] for r in rows):,.0f}, median {statistics.median(r['queue'] for r in steady):,.0f}"
    )
    print(
        f"  verification lag p50 {pct(0.5):.3f} s, p90 {pct(0.9):.3f} s, p99 {pct(0.99):.3f} s, max {lags[-1]:.3f} s"
    )
    print(
        f"    of the {len(quick_lags):,} samples that did not loop: p50 {pct(0.5, quick_lags):.3f} s,"
        f" p99 {pct(0.99, quick_lags):.3f} s"
    )
    runs, cpu, looping_cpu, looping = spent
    print(
        f"  sandbox CPU     {cpu:,.1f} s over {runs:,} runs; {looping_cpu:,.1f} s of it in {looping:,} runs"
        f" stopped at their CPU-time limit ({looping_cpu / max(cpu, 1e-9):.0%})"
    )
    print(
        f"  engine CPU      {100 * statistics.mean(r['cpu_rate'] for r in steady):.0f} % of one core"
        f" (its own process, sandboxes excluded); peak RSS {engine_peak:,.0f} MB"
    )


if __name__ == "__main__":
    sys.exit(main())
