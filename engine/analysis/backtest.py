"""The honest check of an extrapolation: fit each method on the first M samples of every
problem, predict pass@N (N: the smallest sample count of the run) and compare with what the
whole run observed. Sample k of a problem has the same seed whatever the sample count, so the
first M samples are exactly the run one would have had with --samples M."""

from __future__ import annotations

import numpy as np

from engine.analysis import fits as F
from engine.analysis.estimators import mean_over_problems, pass_at_k_matrix
from engine.analysis.scaling import curve_ks, fit_curve


def first_m_counts(outcomes: list[np.ndarray], m: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, c) per problem from its first m outcomes (in sample order)."""
    n = np.array([min(m, len(o)) for o in outcomes])
    c = np.array([int(np.sum(o[:m])) for o in outcomes])
    return n, c


def backtest(outcomes: list[np.ndarray], m: int) -> dict:
    """Each method's predicted pass@N from the first m samples, the observed pass@N, the error."""
    full_n = np.array([len(o) for o in outcomes])
    target_k = int(full_n.min())
    if not 1 <= m < target_k:
        raise ValueError(
            f"--backtest M must be between 1 and {target_k - 1} (the run has {target_k} samples per problem)"
        )
    observed = float(
        mean_over_problems(pass_at_k_matrix(full_n, [int(o.sum()) for o in outcomes], [target_k]))[0]
    )
    n, c = first_m_counts(outcomes, m)
    ks = curve_ks(m)
    curve = mean_over_problems(pass_at_k_matrix(n, c, ks))
    methods: dict[str, dict[str, float | str | None]] = {}
    for method in F.METHODS:
        try:
            fit = F.fit_beta_binomial(n, c) if method == "beta_binomial" else fit_curve(method, ks, curve)
        except F.Unfittable as exc:
            methods[method] = {"predicted": None, "error": None, "note": str(exc)}
            continue
        predicted = float(fit.pass_at([target_k])[0])
        methods[method] = {"predicted": predicted, "error": predicted - observed, "note": None}
    return {"m": m, "k": target_k, "observed": observed, "methods": methods}
