"""The report's fits judged on a simulated sweep: backtest errors and extrapolation errors.

Runs `engine simulate` (10 servers x 4,000 tok/s) and `engine run` over all 164 HumanEval
problems x --samples, then fits every method on the first --backtest samples of every problem
and prints its error in predicting the observed pass@n, then each method's extrapolation to
K = 10^3 and 10^4 with its interval. (The simulator's solve rates are the canonical solution's
share only: some of its wrong variants pass HumanEval's tests, so they are not the truth.)

    .venv/bin/python bench/report.py                       # 164 x 200, backtest from 20
    .venv/bin/python bench/report.py --figure docs/report-example.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from simfleet import start_engine, start_simulator, stop  # noqa: E402

from engine.analysis.fits import LABELS, METHODS  # noqa: E402
from engine.analysis.load import load_run  # noqa: E402
from engine.analysis.plots import plot  # noqa: E402
from engine.analysis.scaling import Settings  # noqa: E402
from engine.report import analyse_run  # noqa: E402


def sweep(work: Path, samples: int, servers: int, tokens_per_second: int) -> Path:
    hosts = work / "hosts.txt"
    simulator = engine = None
    try:
        simulator = start_simulator(hosts, servers, tokens_per_second)
        engine, _ = start_engine(hosts, samples, work, None, [])
        started = time.monotonic()
        if engine.wait() != 0:
            raise SystemExit(f"engine run failed; see {work / 'engine.log'}")
        print(f"sweep: 164 x {samples} samples in {time.monotonic() - started:.0f} s")
    finally:
        stop(engine, simulator)
    return work / "run"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200, help="samples per problem")
    parser.add_argument("--backtest", type=int, default=20, help="fit on the first M samples")
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--tokens-per-second", type=int, default=4000, help="per server")
    parser.add_argument("--run", type=Path, help="analyse this existing run instead of sweeping")
    parser.add_argument("--keep", type=Path, help="sweep into this directory (DIR/run) and keep it")
    parser.add_argument("--figure", type=Path, help="also write the report's figure here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        run_dir = args.run or sweep(work, args.samples, args.servers, args.tokens_per_second)
        started = time.monotonic()
        report = analyse_run(load_run(str(run_dir)), Settings(), args.backtest)
        print(f"analysis (bootstrap 1,000, parametric 200, backtest) in {time.monotonic() - started:.1f} s")
    backtest = report["backtest"]
    print(f"observed pass@{backtest['k']} {backtest['observed']:.4f}; fits on the first {backtest['m']} samples predict:")
    print(f"{'method':<40} {'backtest error':>15}   {'pass@1000 [95 % interval]':<24} {'pass@10000':<24} exponent")
    for method in METHODS:
        fit, tested = report["fits"][method], backtest["methods"][method]
        error = "-" if tested["error"] is None else f"{tested['error']:+.4f}"
        if not fit["ok"]:
            print(f"{LABELS[method]:<40} {error:>15}  not fitted: {fit['note']}")
            continue
        far = [fit["predict"][k] for k in ("1000", "10000")]
        cells = "".join(f"{s['value']:.4f} [{s['lo']:.4f}, {s['hi']:.4f}]".ljust(25) for s in far)
        print(f"{LABELS[method]:<40} {error:>15}   {cells}{fit['exponent']['value']:.3f}")
    if args.figure:
        plot([report], args.figure, [("GPT-4o pass@1", 0.902)])
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
