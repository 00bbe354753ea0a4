"""Four models of how pass@k grows with k, each fitted with scipy, with intervals.

(a) `loglog_fail`: least squares on log fail@k = log a + b log k (the classic power-law line);
(b) `loglog_neglog_pass`: least squares on log(-log pass@k) = log a + b log k, what Schaeffer
    et al. (ICML 2025) fit;
(c) `monkeys_coverage`: coverage c(k) = exp(a k^b), a < 0, non-linear least squares (Brown et
    al., "Large Language Monkeys");
(d) `beta_binomial`: maximum likelihood on the per-problem counts (n_i, c_i), with success
    rates p_i ~ Beta(alpha, beta), plus a point mass zero_mass at p = 0 for problems the model
    never solves and a scale <= 1 (p_i = scale * Beta) when a likelihood-ratio test asks for
    them. pass@K = (1 - zero_mass)(1 - B(alpha, beta + K) / B(alpha, beta)) at scale 1;
    fail@k falls like k^-alpha.

(a)-(c) fit points of one curve, which all come from the same samples: their intervals come
from refitting bootstrap replicates of the curve (problems resampled). (d) fits the samples
themselves; its intervals come from a parametric bootstrap (simulate counts from the fit, refit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, curve_fit, minimize
from scipy.special import betaln, expit, gammaln, logit
from scipy.stats import binom

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
        (log_minus_a, b), _ = curve_fit(
            coverage, ks, passes, p0=(np.log(start.params["a"]), start.params["b"]), maxfev=2000
        )
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
#
# A problem's rate is p = scale * q with q ~ Beta(alpha, beta) and scale <= 1 (a model that
# fails a share of even its easiest problems' samples), or 0 (the point mass). With scale < 1
# the expectations have no closed form, but writing 1 - scale q = (1 - scale) + scale (1 - q)
# and expanding the power turns each into a mean of Beta-function ratios over a binomial J:
#   E[(1 - scale q)^K] = E_J[B(alpha, beta + J)] / B(alpha, beta),  J ~ Binomial(K, scale),
# a sum of positive terms (no cancellation), which is also how the likelihood is computed.

_EXACT_K = 200_000  # beyond this many samples, J's binomial is replaced by its normal limit
_HERMITE = np.polynomial.hermite_e.hermegauss(40)


def _expected_fail(k: float, alpha: float, beta: float, scale: float) -> float:
    """E[(1 - p)^k] over the non-zero part of the model."""
    if scale >= 1.0:
        return float(np.exp(betaln(alpha, beta + k) - betaln(alpha, beta)))
    k = float(np.rint(k))  # with scale < 1, a whole number of samples
    mean, sd = k * scale, np.sqrt(k * scale * (1.0 - scale))
    if k <= _EXACT_K:
        j = np.arange(max(0.0, np.floor(mean - 12 * sd - 1)), min(k, np.ceil(mean + 12 * sd + 1)) + 1)
        weights = binom.pmf(j, k, scale)
    else:
        nodes, weights = _HERMITE
        j, weights = mean + sd * nodes, weights / weights.sum()
    return float(np.sum(weights * np.exp(betaln(alpha, beta + j) - betaln(alpha, beta))))


def beta_binomial_pass_at(
    ks, alpha: float, beta: float, zero_mass: float = 0.0, scale: float = 1.0
) -> np.ndarray:
    """Expected pass@k of a problem whose rate is 0 with probability zero_mass, else scale * Beta(alpha, beta)."""
    ks = np.asarray(ks, dtype=float)
    if scale >= 1.0:
        return (1.0 - zero_mass) * -np.expm1(betaln(alpha, beta + ks) - betaln(alpha, beta))
    fail = np.array([_expected_fail(k, alpha, beta, scale) for k in ks.ravel()]).reshape(ks.shape)
    return (1.0 - zero_mass) * (1.0 - fail)


def _log_rate_terms(n, c, alpha, beta) -> np.ndarray:
    """log E[p^c (1 - p)^(n - c)] for p ~ Beta(alpha, beta), per problem."""
    return betaln(c + alpha, n - c + beta) - betaln(alpha, beta)


@dataclass(frozen=True, slots=True)
class _Expansion:
    """What the scaled likelihood needs that does not depend on the parameters: for each
    problem i and j = 0 .. n_i - c_i, log C(n_i - c_i, j) (-inf beyond n_i - c_i)."""

    c: np.ndarray  # [problem, 1], integer-valued
    failed: np.ndarray  # [problem, 1]
    j: np.ndarray  # [1, j]
    log_binom: np.ndarray  # [problem, j]

    @classmethod
    def of(cls, n, c) -> _Expansion:
        failed = (n - c)[:, None]
        j = np.arange(int(np.max(n - c)) + 1, dtype=float)[None, :]
        log_binom = gammaln(failed + 1) - gammaln(j + 1) - gammaln(np.maximum(failed - j, 0) + 1)
        return cls(c[:, None], failed, j, np.where(j <= failed, log_binom, -np.inf))


def _log_scaled_terms(e: _Expansion, alpha, beta, scale) -> np.ndarray:
    """log E[p^c (1 - p)^(n - c)] for p = scale * Beta(alpha, beta): the binomial expansion of
    (1 - p)^(n - c) over j, summed in log space (all terms positive). B(c + alpha, beta + j)
    is written with log-gamma tables indexed by c, j and c + j, so no matrix of betaln."""
    top = int(e.c.max() + e.j.max()) + 1
    g_alpha, g_beta = gammaln(alpha + np.arange(top)), gammaln(beta + np.arange(top))
    g_sum = gammaln(alpha + beta + np.arange(top))
    ci, ji = e.c.astype(int), e.j.astype(int)
    log_beta = g_alpha[ci] + g_beta[ji] - g_sum[ci + ji] - betaln(alpha, beta)
    terms = e.log_binom + ji * np.log(scale) + (e.failed - ji) * np.log1p(-scale) + log_beta
    top_term = terms.max(axis=1, keepdims=True)  # j = 0 is always finite
    return e.c[:, 0] * np.log(scale) + top_term[:, 0] + np.log(np.exp(terms - top_term).sum(axis=1))


def _negative_log_likelihood(theta, n, c, log_choose, zero_mass: bool, expansion: _Expansion | None) -> float:
    alpha, beta = np.exp(theta[0]), np.exp(theta[1])
    if expansion is not None:
        log_p = log_choose + _log_scaled_terms(expansion, alpha, beta, expit(theta[-1]))
    else:
        log_p = log_choose + _log_rate_terms(n, c, alpha, beta)
    if zero_mass:
        pi = expit(theta[2])
        log_p = np.where(c == 0, np.logaddexp(np.log(pi), np.log1p(-pi) + log_p), np.log1p(-pi) + log_p)
    return -float(np.sum(log_p))


def _maximise(n, c, zero_mass: bool, scale: bool = False, start=None) -> tuple[np.ndarray, float]:
    log_choose = gammaln(n + 1) - gammaln(c + 1) - gammaln(n - c + 1)
    mean = float(np.clip(np.mean(c / n), 0.01, 0.99))
    bounds = [(-7.0, 7.0), (-7.0, 14.0)]
    if start is None:
        start = [np.log(0.5), np.log(0.5 * (1 - mean) / mean)]
        if zero_mass:
            start.append(np.log(max(np.mean(c == 0), 0.01) / 2))
    if zero_mass:
        bounds.append((-15.0, 15.0))
    if scale:  # logit of the scale, from the best rate seen; at 15 the scale is 1 to 3e-7
        start = [*start, float(np.clip(logit(max(np.max(c / n), 0.05)), -5.0, 5.0))]
        bounds.append((-5.0, 15.0))
    args = (n, c, log_choose, zero_mass, _Expansion.of(n, c) if scale else None)
    result = minimize(_negative_log_likelihood, start, args=args, method="SLSQP", bounds=bounds)
    return result.x, -float(result.fun)


def _chosen(forced: bool | None, log_l_with: float, log_l_without: float) -> bool:
    """Whether to keep an extra parameter: as asked, or when the likelihood-ratio test wants it."""
    return bool(forced) if forced is not None else log_l_with - log_l_without > _LR_CRITICAL


def fit_beta_binomial(n, c, zero_mass: bool | None = None, scale: bool | None = None) -> Fit:
    """MLE of (alpha, beta[, zero_mass][, scale]); None lets a likelihood-ratio test decide
    each extra parameter (first the point mass, then the scale); True or False imposes it."""
    n, c = np.asarray(n, dtype=float), np.asarray(c, dtype=float)
    if c.sum() == 0:
        raise Unfittable("no sample passed: the success rates cannot be fitted")
    if np.all(c == n):
        raise Unfittable("every sample passed: pass@k is 1 at every k, nothing to fit")
    theta, log_l = _maximise(n, c, False)
    with_mass = False
    if zero_mass is not False and np.any(c == 0):
        theta_z, log_l_z = _maximise(n, c, True)
        if _chosen(zero_mass, log_l_z, log_l):
            theta, log_l, with_mass = theta_z, log_l_z, True
    with_scale = False
    if scale is not False:
        theta_s, log_l_s = _maximise(n, c, with_mass, True, start=list(theta))
        if _chosen(scale, log_l_s, log_l):
            theta, log_l, with_scale = theta_s, log_l_s, True
    alpha, beta = float(np.exp(theta[0])), float(np.exp(theta[1]))
    pi = float(expit(theta[2])) if with_mass else 0.0
    s = float(expit(theta[-1])) if with_scale else 1.0
    params = {"alpha": alpha, "beta": beta, "zero_mass": pi, "scale": s, "log_likelihood": log_l}
    return Fit("beta_binomial", params, alpha, lambda k: beta_binomial_pass_at(k, alpha, beta, pi, s))
