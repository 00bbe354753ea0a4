"""Four models of how pass@k grows with k, each fitted with scipy, with intervals.

(a) `loglog_fail`: least squares on log fail@k = log a + b log k (the classic power-law line);
(b) `loglog_neglog_pass`: least squares on log(-log pass@k) = log a + b log k, what Schaeffer
    et al. (ICML 2025) fit;
(c) `monkeys_coverage`: coverage c(k) = exp(a k^b), a < 0, non-linear least squares (Brown et
    al., "Large Language Monkeys");
(d) `beta_binomial`: maximum likelihood on the per-problem counts (n_i, c_i), with success
    rates p_i ~ Beta(alpha, beta), plus a point mass zero_mass at p = 0 for problems the model
    never solves when a likelihood-ratio test asks for one. pass@K = (1 - zero_mass)
    (1 - B(alpha, beta + K) / B(alpha, beta)); fail@k falls like k^-alpha.

(a)-(c) fit points of one curve, which all come from the same samples: their intervals come
from refitting bootstrap replicates of the curve (problems resampled). (d) fits the samples
themselves; its intervals come from a parametric bootstrap (simulate counts from the fit, refit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, curve_fit, minimize
from scipy.special import betaln, expit, gammaln

METHODS = ("loglog_fail", "loglog_neglog_pass", "monkeys_coverage", "beta_binomial")
LABELS = {
    "loglog_fail": "(a) log fail@k linear in log k",
    "loglog_neglog_pass": "(b) log(-log pass@k) linear in log k",
    "monkeys_coverage": "(c) coverage = exp(a k^b)",
    "beta_binomial": "(d) beta-binomial likelihood",
}
K_MAX = 1e12  # beyond this, a target counts as out of reach
_LR_CRITICAL = 2.71 / 2  # a boundary parameter: 5 % level of the 50:50 chi-square mixture, on log L


class Unfittable(Exception):
    """The data cannot carry this model (e.g. nothing or everything solved); str says why."""


@dataclass(frozen=True, slots=True)
class Fit:
    method: str
    params: dict[str, float]
    exponent: float  # fail@k falls like k^-exponent
    predict: Callable[[np.ndarray], np.ndarray]  # k -> pass@k

    def pass_at(self, ks) -> np.ndarray:
        return np.clip(self.predict(np.asarray(ks, dtype=float)), 0.0, 1.0)

    def k_for(self, target: float) -> float:
        """The k at which predicted pass@k reaches `target`; inf if not before K_MAX."""
        if self.pass_at([1.0])[0] >= target:
            return 1.0
        if self.pass_at([K_MAX])[0] < target:
            return float("inf")
        return float(np.exp(brentq(lambda x: self.pass_at([np.exp(x)])[0] - target, 0.0, np.log(K_MAX))))


# -- (a)-(c): fits of one pass@k curve ------------------------------------------------------


def _check_curve(passes: np.ndarray) -> None:
    if np.all(passes >= 1.0):
        raise Unfittable("every problem solved at every k: pass@k is 1, no curve to fit")
    if np.all(passes <= 0.0):
        raise Unfittable("no problem solved: pass@k is 0, no curve to fit")


def _line(x: np.ndarray, y: np.ndarray, what: str) -> tuple[float, float]:
    if len(x) < 3:
        raise Unfittable(f"fewer than 3 points with {what}")
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def fit_loglog_fail(ks, passes) -> Fit:
    ks, passes = np.asarray(ks, dtype=float), np.asarray(passes, dtype=float)
    _check_curve(passes)
    keep = passes < 1.0
    log_a, b = _line(np.log(ks[keep]), np.log(1.0 - passes[keep]), "fail@k > 0")
    a = float(np.exp(log_a))
    return Fit("loglog_fail", {"a": a, "b": b}, -b, lambda k: 1.0 - a * np.power(k, b))


def fit_loglog_neglog_pass(ks, passes) -> Fit:
    ks, passes = np.asarray(ks, dtype=float), np.asarray(passes, dtype=float)
    _check_curve(passes)
    keep = (passes > 0.0) & (passes < 1.0)
    log_a, b = _line(np.log(ks[keep]), np.log(-np.log(passes[keep])), "0 < pass@k < 1")
    a = float(np.exp(log_a))
    return Fit("loglog_neglog_pass", {"a": a, "b": b}, -b, lambda k: np.exp(-a * np.power(k, b)))


def fit_monkeys_coverage(ks, passes) -> Fit:
    ks, passes = np.asarray(ks, dtype=float), np.asarray(passes, dtype=float)
    start = fit_loglog_neglog_pass(ks, passes)  # same form, fitted in log space: a good start

    def coverage(k, log_minus_a, b):
        return np.exp(-np.exp(log_minus_a) * np.power(k, b))

    try:
        (log_minus_a, b), _ = curve_fit(coverage, ks, passes, p0=(np.log(start.params["a"]), start.params["b"]), maxfev=2000)
    except (RuntimeError, ValueError) as exc:
        raise Unfittable(f"non-linear least squares did not converge ({exc})") from exc
    a = -float(np.exp(log_minus_a))
    b = float(b)
    return Fit("monkeys_coverage", {"a": a, "b": b}, -b, lambda k: np.exp(a * np.power(k, b)))


CURVE_FITS = {
    "loglog_fail": fit_loglog_fail,
    "loglog_neglog_pass": fit_loglog_neglog_pass,
    "monkeys_coverage": fit_monkeys_coverage,
}


# -- (d): beta-binomial maximum likelihood ---------------------------------------------------


def beta_binomial_pass_at(ks, alpha: float, beta: float, zero_mass: float = 0.0) -> np.ndarray:
    """Expected pass@k of a problem whose rate is 0 with probability zero_mass, else ~ Beta(alpha, beta)."""
    ks = np.asarray(ks, dtype=float)
    return (1.0 - zero_mass) * -np.expm1(betaln(alpha, beta + ks) - betaln(alpha, beta))


def _negative_log_likelihood(theta, n, c, log_choose, zero_mass: bool) -> float:
    alpha, beta = np.exp(theta[0]), np.exp(theta[1])
    log_p = log_choose + betaln(c + alpha, n - c + beta) - betaln(alpha, beta)
    if zero_mass:
        pi = expit(theta[2])
        log_p = np.where(c == 0, np.logaddexp(np.log(pi), np.log1p(-pi) + log_p), np.log1p(-pi) + log_p)
    return -float(np.sum(log_p))


def _maximise(n, c, zero_mass: bool) -> tuple[np.ndarray, float]:
    log_choose = gammaln(n + 1) - gammaln(c + 1) - gammaln(n - c + 1)
    mean = float(np.clip(np.mean(c / n), 0.01, 0.99))
    start = [np.log(0.5), np.log(0.5 * (1 - mean) / mean)]
    bounds = [(-7.0, 7.0), (-7.0, 14.0)]
    if zero_mass:
        start.append(np.log(max(np.mean(c == 0), 0.01) / 2))
        bounds.append((-15.0, 15.0))
    result = minimize(_negative_log_likelihood, start, args=(n, c, log_choose, zero_mass), method="SLSQP", bounds=bounds)
    return result.x, -float(result.fun)


def fit_beta_binomial(n, c, zero_mass: bool | None = None) -> Fit:
    """MLE of (alpha, beta[, zero_mass]); zero_mass=None lets a likelihood-ratio test decide."""
    n, c = np.asarray(n, dtype=float), np.asarray(c, dtype=float)
    if c.sum() == 0:
        raise Unfittable("no sample passed: the success rates cannot be fitted")
    if np.all(c == n):
        raise Unfittable("every sample passed: pass@k is 1 at every k, nothing to fit")
    theta, log_l = _maximise(n, c, False)
    if zero_mass is not False and np.any(c == 0):
        theta_z, log_l_z = _maximise(n, c, True)
        if zero_mass or log_l_z - log_l > _LR_CRITICAL:
            theta, log_l = theta_z, log_l_z
    alpha, beta = float(np.exp(theta[0])), float(np.exp(theta[1]))
    pi = float(expit(theta[2])) if len(theta) == 3 else 0.0
    params = {"alpha": alpha, "beta": beta, "zero_mass": pi, "log_likelihood": log_l}
    return Fit("beta_binomial", params, alpha, lambda k: beta_binomial_pass_at(k, alpha, beta, pi))


def simulate_counts(fit: Fit, n, rng: np.random.Generator) -> np.ndarray:
    """Counts of passes per problem drawn from a beta-binomial fit (the parametric bootstrap)."""
    n = np.asarray(n)
    p = rng.beta(fit.params["alpha"], fit.params["beta"], size=len(n))
    p[rng.random(len(n)) < fit.params["zero_mass"]] = 0.0
    return rng.binomial(n, p)
