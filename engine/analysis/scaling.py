"""The scaling-law analysis of one run's counts: pass@k with intervals, the four fits with
intervals, their extrapolations and the k each needs to reach a target coverage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.analysis import fits as F
from engine.analysis.estimators import (
    bootstrap_curves,
    bootstrap_weights,
    mean_over_problems,
    pass_at_k_intervals,
    pass_at_k_matrix,
)
from engine.analysis.simulate import counts_under_policy, policy_resimulated
from metrics.passk import ks_for

HORIZONS = (100, 1000, 10000)


@dataclass(frozen=True, slots=True)
class Settings:
    boots: int = 1000  # bootstrap replicates over problems
    parametric_boots: int = 200  # beta-binomial refits (each an optimisation)
    seed: int = 0
    level: float = 0.95
    target: float = 0.95
    horizons: tuple[int, ...] = HORIZONS
    estimate_ks: tuple[
        int, ...
    ] = ()  # where each fit also gives pass@k (the headline under adaptive policies)
    policy: str = "uniform"  # how the run drew its samples: the parametric bootstrap draws the same way
    stop_after: int = 1  # until-solved: passes that end a problem
    cap: int | None = None  # samples asked per problem (until-solved's cap)


def curve_ks(n_min: int) -> list[int]:
    """About 60 k values spread evenly on a log axis from 1 to n_min, with the usual ones."""
    spread = np.unique(np.geomspace(1, n_min, num=min(n_min, 60)).round().astype(int))
    return sorted(set(spread.tolist()) | set(ks_for(n_min)))


def fit_curve(method: str, ks, passes) -> F.Fit:
    return F.CURVE_FITS[method](ks, passes)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _summary(value: float, replicates: list[float], level: float) -> dict:
    """A value with the percentile interval of its replicates (None: unbounded or none)."""
    values = np.asarray(replicates, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return {"value": _finite(value), "lo": None, "hi": None}
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(
        values, [tail, 100 - tail], method="inverted_cdf"
    )  # no interpolation: k may be inf
    return {"value": _finite(value), "lo": _finite(lo), "hi": _finite(hi)}


def _describe(fit: F.Fit, settings: Settings) -> list[float]:
    """The numbers a fit is judged by, in a fixed order: params, exponent, predictions, k for target."""
    names = [p for p in fit.params if p != "log_likelihood"]
    return [fit.params[p] for p in names] + [
        fit.exponent,
        *fit.pass_at(settings.horizons),
        fit.k_for(settings.target),
        *fit.pass_at(settings.estimate_ks),
    ]


def _report(fit: F.Fit, replicates: list[F.Fit], settings: Settings, replicate_kind: str) -> dict:
    names = [p for p in fit.params if p != "log_likelihood"]
    point = _describe(fit, settings)
    table = (
        np.array([_describe(r, settings) for r in replicates]) if replicates else np.empty((0, len(point)))
    )
    column = iter(range(len(point)))

    def next_summary() -> dict:
        j = next(column)
        return _summary(point[j], table[:, j].tolist(), settings.level)

    return {
        "label": F.LABELS[fit.method],
        "ok": True,
        "note": None,
        "params": {p: next_summary() for p in names},
        "exponent": next_summary(),
        "predict": {str(k): next_summary() for k in settings.horizons},
        "k_for_target": next_summary(),
        "pass_at_k": {str(k): next_summary() for k in settings.estimate_ks},
        "intervals": f"{replicate_kind}, {len(replicates)} replicates",
        **({"log_likelihood": fit.params["log_likelihood"]} if "log_likelihood" in fit.params else {}),
    }


def _unfittable(method: str, reason: str) -> dict:
    return {"label": F.LABELS[method], "ok": False, "note": reason}


def _refits(fitter, inputs) -> list[F.Fit]:
    fitted = []
    for args in inputs:
        try:
            fitted.append(fitter(*args))
        except F.Unfittable:
            pass  # a replicate the model cannot carry says nothing about the interval's width
    return fitted


def fit_all(n, c, ks, curve, boot_curves, settings: Settings) -> dict:
    """Every method's fit with intervals, or its reason for not fitting."""
    reports = {}
    for method in F.CURVE_FITS:
        try:
            fit = fit_curve(method, ks, curve)
        except F.Unfittable as exc:
            reports[method] = _unfittable(method, str(exc))
            continue
        replicates = _refits(lambda p, m=method: fit_curve(m, ks, p), ((row,) for row in boot_curves))
        reports[method] = _report(fit, replicates, settings, "bootstrap over problems")
    try:
        fit = F.fit_beta_binomial(n, c)
    except F.Unfittable as exc:
        reports["beta_binomial"] = _unfittable("beta_binomial", str(exc))
        return reports
    rng = np.random.default_rng(settings.seed)
    policy = {"name": settings.policy, "stop_after": settings.stop_after}
    model = (fit.params["zero_mass"] > 0, fit.params["scale"] < 1)  # each replicate refits the same model
    draws = [
        (*counts_under_policy(fit, n, policy, settings.cap, rng), *model)
        for _ in range(settings.parametric_boots)
    ]
    kind = "parametric bootstrap" + (
        ", the until-solved stopping re-simulated" if policy_resimulated(policy, settings.cap) else ""
    )
    reports["beta_binomial"] = _report(fit, _refits(F.fit_beta_binomial, draws), settings, kind)
    return reports


def analyse(n, c, settings: Settings = Settings()) -> dict:
    """pass@k at every k up to the smallest n with intervals, and the four fits."""
    n, c = np.asarray(n), np.asarray(c)
    ks = curve_ks(int(n.min()))
    matrix = pass_at_k_matrix(n, c, ks)
    weights = bootstrap_weights(len(n), settings.boots, settings.seed)
    intervals = pass_at_k_intervals(matrix, weights, settings.level)
    curve = mean_over_problems(matrix)
    boot_curves = bootstrap_curves(matrix, weights)
    return {
        "ks": ks,
        "intervals": {str(k): iv.to_dict() for k, iv in zip(ks, intervals)},
        "fits": fit_all(n, c, ks, curve, boot_curves, settings),
    }
