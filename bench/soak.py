"""Soak: a long simulated sweep, watching the engine for leaks.

Starts `engine simulate` (10 servers) and `engine run` over all of HumanEval as two processes,
samples the engine process every --every seconds and prints RSS, open descriptors, queue
depth and throughput over time; stops at --samples verified samples or after --minutes,
whichever comes first (SIGTERM: the graceful stop). At the end it prints the growth of RSS and
descriptors after warm-up (the first --warmup share of the run). Target: under 10 %.

    .venv/bin/python bench/soak.py                          # >= 1M samples or 30 min
    .venv/bin/python bench/soak.py --minutes 5 --every 10   # a short look
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from procstat import cpu_seconds, open_fds, rss_mb  # noqa: E402
from simfleet import metric, start_engine, start_simulator, stop  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", type=int, default=1_000_000, help="stop after this many verified samples"
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="or after this long")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between observations")
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the run counted as warm-up")
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--tokens-per-second", type=int, default=4000)
    parser.add_argument("--workers", type=int, help="sandbox workers (default: the engine's, two per core)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="engine-soak-"))
    hosts = work / "hosts.txt"
    simulator = engine = None
    try:
        simulator = start_simulator(hosts, args.servers, args.tokens_per_second)
        per_problem = -(-args.samples // 164)  # ceil: all of HumanEval, enough samples each
        engine, port = start_engine(hosts, per_problem, work, args.workers, [])
        start = time.monotonic()
        rows = []
        print(
            f"{'min':>6} {'RSS MB':>8} {'fds':>5} {'queue':>6} {'verified':>10} {'samples/s':>10}"
            f" {'tok/s':>8} {'CPU %':>6}",
            flush=True,
        )
        last = (start, 0.0, 0.0, cpu_seconds(engine.pid))
        while engine.poll() is None:
            time.sleep(args.every)
            if engine.poll() is not None:
                break
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            now = time.monotonic()
            verified = metric(text, "engine_samples_verified_total")
            tokens = metric(text, "engine_generated_tokens_total")
            cpu = cpu_seconds(engine.pid)
            t0, v0, k0, c0 = last
            row = {
                "minutes": (now - start) / 60,
                "rss": rss_mb(engine.pid),
                "fds": open_fds(engine.pid),
                "queue": metric(text, "engine_queue_depth"),
                "verified": verified,
                "rate": (verified - v0) / (now - t0),
                "tokens": (tokens - k0) / (now - t0),
                "cpu": 100 * (cpu - c0) / (now - t0),
            }
            last = (now, verified, tokens, cpu)
            rows.append(row)
            print(
                f"{row['minutes']:6.1f} {row['rss']:8.1f} {row['fds']:5d} {row['queue']:6.0f} {row['verified']:10,.0f}"
                f" {row['rate']:10,.1f} {row['tokens']:8,.0f} {row['cpu']:6.1f}",
                flush=True,
            )
            if verified >= args.samples or now - start >= args.minutes * 60:
                engine.send_signal(signal.SIGTERM)
                engine.wait(timeout=300)
                break
        report(rows, args.warmup)
        stored(work / "run" / "results.sqlite")
        return 0
    finally:
        stop(engine, simulator)
        print(f"soak: run directory {work}", file=sys.stderr)


def report(rows: list[dict], warmup: float) -> None:
    if len(rows) < 4:
        print("soak: too short to judge growth")
        return
    settled = rows[max(1, int(len(rows) * warmup)) :]
    head = settled[: max(1, len(settled) // 5)]
    tail = settled[-max(1, len(settled) // 5) :]
    for key, label in (("rss", "RSS"), ("fds", "open descriptors")):
        before = statistics.median(r[key] for r in head)
        after = statistics.median(r[key] for r in tail)
        growth = (after - before) / before if before else 0.0
        print(f"{label}: {before:,.1f} after warm-up -> {after:,.1f} at the end ({growth:+.1%})")
    print(
        f"last observation: {rows[-1]['verified']:,.0f} samples verified at {rows[-1]['minutes']:.1f} min;"
        f" median {statistics.median(r['rate'] for r in settled):,.1f} samples/s,"
        f" {statistics.median(r['tokens'] for r in settled):,.0f} tok/s,"
        f" engine CPU {statistics.median(r['cpu'] for r in settled):.0f} % of one core"
    )


def stored(db: Path) -> None:
    """What the store holds at the end: every sample once, verified or resumable."""
    connection = sqlite3.connect(db)
    samples, verified = connection.execute("SELECT COUNT(*), COUNT(verdict) FROM samples").fetchone()
    connection.close()
    print(f"store: {samples:,} samples, {verified:,} verified ({db.stat().st_size / 2**20:,.0f} MB)")


if __name__ == "__main__":
    sys.exit(main())
