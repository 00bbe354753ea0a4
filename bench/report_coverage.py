"""How often the beta-binomial fit's parametric-bootstrap intervals contain the truth.

Synthetic sweeps whose truth is known: 164 problems, rates ~ Beta(0.5, 3), --samples each
(`uniform`), or each sampled until its first pass with --samples as the cap (`until-solved`).
Each trial fits, refits --boots parametric replicates drawn under the same policy, and checks
whether the 95 % interval of alpha, pass@100 and pass@1000 (extrapolations beyond n) contains
the true value. `--hold-n` draws until-solved replicates with each problem's observed count
instead (what the report did before it re-simulated the stopping rule). Too slow for a test
(one optimisation per replicate), so a benchmark that prints the coverage.

    .venv/bin/python bench/report_coverage.py                          # 100 trials x 100 replicates, ~1 min
    .venv/bin/python bench/report_coverage.py --policy until-solved    # the stopping rule re-simulated
    .venv/bin/python bench/report_coverage.py --policy until-solved --hold-n
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from engine.analysis import fits as F
from engine.analysis.simulate import counts_under_policy, until_solved

ALPHA, BETA, PROBLEMS = 0.5, 3.0, 164


def sweep(rng: np.random.Generator, policy: str, cap: int) -> tuple[np.ndarray, np.ndarray]:
    p = rng.beta(ALPHA, BETA, PROBLEMS)
    if policy == "until-solved":
        return until_solved(p, cap, 1, rng)
    n = np.full(PROBLEMS, cap)
    return n, rng.binomial(n, p)


def trial(rng: np.random.Generator, args, horizons: list[int]) -> list[bool]:
    """Whether each interval (alpha, then pass@K per horizon) contains the truth."""
    n, c = sweep(rng, args.policy, args.samples)
    fit = F.fit_beta_binomial(n, c)
    policy = {"name": "uniform" if args.hold_n else args.policy, "stop_after": 1}
    model = (fit.params["zero_mass"] > 0, fit.params["scale"] < 1)
    replicates = []
    for _ in range(args.boots):
        try:
            replicates.append(
                F.fit_beta_binomial(*counts_under_policy(fit, n, policy, args.samples, rng), *model)
            )
        except F.Unfittable:
            pass
    columns = [[r.params["alpha"] for r in replicates]] + [
        [r.pass_at([k])[0] for r in replicates] for k in horizons
    ]
    truths = [ALPHA] + [F.beta_binomial_pass_at([k], ALPHA, BETA)[0] for k in horizons]
    return [bool(np.percentile(c, 2.5) <= t <= np.percentile(c, 97.5)) for c, t in zip(columns, truths)]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--boots", type=int, default=100, help="parametric replicates per trial")
    parser.add_argument("--samples", type=int, default=50, help="samples per problem (until-solved: the cap)")
    parser.add_argument("--policy", choices=["uniform", "until-solved"], default="uniform")
    parser.add_argument(
        "--hold-n", action="store_true", help="until-solved replicates keep the observed counts"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    horizons = [100, 1000]
    started = time.monotonic()
    hits = np.sum([trial(rng, args, horizons) for _ in range(args.trials)], axis=0)
    names = ["alpha"] + [f"pass@{k}" for k in horizons]
    share = ", ".join(f"{name} {h / args.trials:.0%}" for name, h in zip(names, hits))
    how = " (replicates hold n)" if args.hold_n else ""
    print(
        f"{args.trials} trials of {PROBLEMS} x {args.samples} samples ({args.policy}{how}), {args.boots} replicates each, "
        f"in {time.monotonic() - started:.0f} s: nominal 95 % intervals contain the truth: {share}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
