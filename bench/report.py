"""The report's fits judged on a simulated sweep: backtest errors and extrapolation errors.

Runs `engine simulate` (10 servers x 4,000 tok/s) and `engine run` over all 164 HumanEval
problems x --samples, then fits every method on the first --backtest samples of every problem
and prints its error in predicting the observed pass@n, then each method's extrapolation to
K = 10^3 and 10^4 with its interval. With --until-solved, a second sweep with the same seeds
stops each problem at its first pass: the tokens it saves at equal coverage, and the pass@1
estimates (Chen's, biased there, and the likelihood's) beside the uniform run's. (The simulator's solve rates are the canonical solution's
share only: some of its wrong variants pass HumanEval's tests, so they are not the truth.)

    .venv/bin/python bench/report.py                       # 164 x 200, backtest from 20
    .venv/bin/python bench/report.py --figure docs/report-example.png
    .venv/bin/python bench/report.py --until-solved          # and the tokens until-solved saves
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from simfleet import start_engine, start_simulator, stop  # noqa: E402

from engine.analysis.fits import LABELS, METHODS  # noqa: E402
from engine.analysis.load import load_run  # noqa: E402
from engine.analysis.plots import plot  # noqa: E402
from engine.analysis.scaling import Settings  # noqa: E402
from engine.report import analyse_run  # noqa: E402


def sweep(
    work: Path, samples: int, servers: int, tokens_per_second: int, policies: list[str]
) -> dict[str, Path]:
    """One sweep per policy (same seeds) on one simulated fleet; returns each run's directory."""
    hosts = work / "hosts.txt"
    simulator = engine = None
    runs = {}
    try:
        simulator = start_simulator(hosts, servers, tokens_per_second)
        for policy in policies:
            (work / policy).mkdir(parents=True, exist_ok=True)
            engine, _ = start_engine(hosts, samples, work / policy, None, ["--policy", policy])
            started = time.monotonic()
            if engine.wait() != 0:
                raise SystemExit(f"engine run failed; see {work / policy / 'engine.log'}")
            print(f"sweep ({policy}): 164 x {samples} samples in {time.monotonic() - started:.0f} s")
            runs[policy] = work / policy / "run"
    finally:
        stop(engine, simulator)
    return runs


def print_savings(uniform: dict, solved: dict) -> None:
    """Tokens until-solved spends for the same coverage (it solves exactly the problems that the
    uniform run's samples solve: same seeds, and an unsolved problem gets every sample)."""
    print(
        f"until-solved: coverage {solved['coverage']:.4f} (uniform pass@{uniform['n']} {uniform['coverage']:.4f}) with"
        f" {solved['tokens']:,} completion tokens against {uniform['tokens']:,}: {1 - solved['tokens'] / uniform['tokens']:.0%} saved;"
        f" {solved['samples']:,} samples against {uniform['samples']:,}"
    )
    e = solved["estimate"]
    print(
        f"  pass@1: uniform (Chen, unbiased) {uniform['pass_at_k']['1']:.4f}; until-solved Chen {e['chen']['1']:.4f} (biased),"
        f" likelihood {e['beta_binomial']['1']['value']:.4f} [{e['beta_binomial']['1']['lo']:.4f}, {e['beta_binomial']['1']['hi']:.4f}]"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200, help="samples per problem")
    parser.add_argument("--backtest", type=int, default=20, help="fit on the first M samples")
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--tokens-per-second", type=int, default=4000, help="per server")
    parser.add_argument("--run", type=Path, help="analyse this existing run instead of sweeping")
    parser.add_argument("--keep", type=Path, help="sweep into this directory (DIR/run) and keep it")
    parser.add_argument("--figure", type=Path, help="also write the report's figure here")
    parser.add_argument(
        "--until-solved", action="store_true", help="also sweep with --policy until-solved and compare tokens"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        policies = ["uniform", "until-solved"] if args.until_solved else ["uniform"]
        runs = (
            {"uniform": args.run}
            if args.run
            else sweep(work, args.samples, args.servers, args.tokens_per_second, policies)
        )
        started = time.monotonic()
        report = analyse_run(load_run(str(runs["uniform"])), Settings(), args.backtest)
        print(f"analysis (bootstrap 1,000, parametric 200, backtest) in {time.monotonic() - started:.1f} s")
        if "until-solved" in runs:
            print_savings(report, analyse_run(load_run(str(runs["until-solved"])), Settings()))
    backtest = report["backtest"]
    print(
        f"observed pass@{backtest['k']} {backtest['observed']:.4f}; fits on the first {backtest['m']} samples predict:"
    )
    print(
        f"{'method':<40} {'backtest error':>15}   {'pass@1000 [95 % interval]':<24} {'pass@10000':<24} exponent"
    )
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
