"""pass@k over problems with its uncertainty.

The Chen et al. estimator, vectorised over problems and k (log-gamma form: the binomials
overflow), the bootstrap over problems (the sampling unit of a benchmark is the problem, not
the sample) and the analytic standard error of a mean over problems (Miller, arXiv 2411.00640).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

# The five verdicts about a program; anything else (infra_error) is not counted in n.
VERDICTS = ("passed", "failed", "timeout", "oom", "error")


@dataclass(frozen=True, slots=True)
class Interval:
    value: float
    lo: float
    hi: float
    se: float | None = None  # analytic standard error, where one exists

    def to_dict(self) -> dict:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "se": self.se}


def pass_at_k_matrix(n, c, ks) -> np.ndarray:
    """[problem, k] -> pass@k of that problem; NaN where n < k (it does not count at that k)."""
    n = np.asarray(n, dtype=float)[:, None]
    c = np.asarray(c, dtype=float)[:, None]
    k = np.asarray(ks, dtype=float)[None, :]
    failed = n - c
    with np.errstate(invalid="ignore", divide="ignore"):
        # log C(n-c, k) / C(n, k), grouped so that c = 0 gives exactly 0
        log_ratio = (gammaln(failed + 1) - gammaln(n + 1)) + (gammaln(n - k + 1) - gammaln(failed - k + 1))
        ratio = np.where(failed >= k, np.exp(log_ratio), 0.0)
    return np.where(n >= k, 1.0 - ratio, np.nan)


def mean_over_problems(matrix: np.ndarray) -> np.ndarray:
    """Mean pass@k at every k over the problems that count there (NaN where none does)."""
    counted = ~np.isnan(matrix)
    with np.errstate(invalid="ignore"):
        return np.where(counted, matrix, 0.0).sum(axis=0) / counted.sum(axis=0)


def bootstrap_weights(problems: int, boots: int, seed: int) -> np.ndarray:
    """[replicate, problem] -> how often the problem is drawn (resampling problems with replacement)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(problems, np.full(problems, 1.0 / problems), size=boots).astype(float)


def bootstrap_curves(matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[replicate, k] -> mean pass@k of each bootstrap replicate."""
    counted = ~np.isnan(matrix)
    with np.errstate(invalid="ignore"):
        return (weights @ np.where(counted, matrix, 0.0)) / (weights @ counted)


def pass_at_k_intervals(matrix: np.ndarray, weights: np.ndarray, level: float = 0.95) -> list[Interval]:
    """Per k: the estimate, the percentile bootstrap interval and the analytic standard error."""
    estimate = mean_over_problems(matrix)
    curves = bootstrap_curves(matrix, weights)
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(curves, [tail, 100 - tail], axis=0)
    counted = (~np.isnan(matrix)).sum(axis=0)
    intervals = []
    for j, value in enumerate(estimate):
        column = matrix[~np.isnan(matrix[:, j]), j]
        se = float(np.std(column, ddof=1) / np.sqrt(counted[j])) if counted[j] > 1 else None
        intervals.append(Interval(float(value), float(lo[j]), float(hi[j]), se))
    return intervals
