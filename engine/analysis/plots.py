"""The report's figure: four panels, one colour per run.

pass@k with its bootstrap band, reference lines and the beta-binomial extrapolation; fail@k on
log-log axes with the four fits; the histogram of per-problem success rates on a log axis with
the fitted density; coverage against completion tokens spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.stats import beta as beta_dist

from engine.analysis.fits import METHODS, beta_binomial_pass_at

FIT_STYLES = {
    "loglog_fail": "--",
    "loglog_neglog_pass": ":",
    "monkeys_coverage": "-.",
    "beta_binomial": (0, (5, 1, 1, 1, 1, 1)),
}
SHORT = {"loglog_fail": "(a)", "loglog_neglog_pass": "(b)", "monkeys_coverage": "(c)", "beta_binomial": "(d)"}
EXTRAPOLATE_TO = 10_000


def _fit_curve(method: str, fit: dict, ks: np.ndarray) -> np.ndarray:
    p = {name: s["value"] for name, s in fit["params"].items()}
    if method == "loglog_fail":
        return 1 - p["a"] * ks ** p["b"]
    if method == "loglog_neglog_pass":
        return np.exp(-p["a"] * ks ** p["b"])
    if method == "monkeys_coverage":
        return np.exp(p["a"] * ks ** p["b"])
    return beta_binomial_pass_at(ks, p["alpha"], p["beta"], p["zero_mass"], p.get("scale", 1.0))


def _label(c: dict) -> str:
    return f"{c['model']} ({Path(c['out']).name})"


def _pass_panel(ax, c: dict, color) -> None:
    ks = np.array([int(k) for k in c["intervals"]])
    iv = list(c["intervals"].values())
    ax.plot(ks, [i["value"] for i in iv], color=color, marker=".", label=_label(c))
    ax.fill_between(ks, [i["lo"] for i in iv], [i["hi"] for i in iv], color=color, alpha=0.2)
    bb = c["fits"].get("beta_binomial", {})
    if bb.get("ok") and ks[-1] < EXTRAPOLATE_TO:
        beyond = np.geomspace(ks[-1], EXTRAPOLATE_TO, 40)
        ax.plot(
            beyond,
            _fit_curve("beta_binomial", bb, beyond),
            color=color,
            linestyle=":",
            label="(d) extrapolated",
        )


def _fail_panel(ax, c: dict, color) -> None:
    ks = np.array([int(k) for k in c["intervals"]])
    iv = list(c["intervals"].values())
    fail = np.array([1 - i["value"] for i in iv])
    shown = fail > 0
    ax.loglog(ks[shown], fail[shown], color=color, marker=".", linestyle="none", label=_label(c))
    lo, hi = np.array([1 - i["hi"] for i in iv]), np.array([1 - i["lo"] for i in iv])
    floor = fail[shown].min() / 3 if shown.any() else 1e-3  # a band reaching fail@k = 0 would squash the axis
    ax.fill_between(ks[shown], np.maximum(lo[shown], floor), hi[shown], color=color, alpha=0.15)
    for method in METHODS:
        fit = c["fits"].get(method, {})
        if fit.get("ok"):
            fitted = 1 - _fit_curve(method, fit, ks.astype(float))
            ax.loglog(
                ks,
                np.maximum(fitted, floor),
                color=color,
                linestyle=FIT_STYLES[method],
                linewidth=1,
                label=f"{SHORT[method]} exponent {fit['exponent']['value']:.2f}",
            )


def _distribution_panel(ax, c: dict, color) -> None:
    d = c["distribution"]
    n_max = max(d["n"])
    edges = np.geomspace(1 / n_max, 1, 25)
    solved = [p for p in d["p_hat"] if p > 0]
    ax.hist(
        solved,
        bins=edges,
        histtype="step",
        color=color,
        label=f"{_label(c)}: {d['never_solved']} never solved",
    )
    bb = c["fits"].get("beta_binomial", {})
    if bb.get("ok"):
        p = {name: s["value"] for name, s in bb["params"].items()}
        scale = p.get("scale", 1.0)  # rates are scale * Beta: P(rate < x) = P(Beta < x / scale)
        expected = (
            d["problems"]
            * (1 - p["zero_mass"])
            * np.diff(beta_dist.cdf(edges / scale, p["alpha"], p["beta"]))
        )
        ax.stairs(
            expected, edges, color=color, linestyle="--", label=f"Beta({p['alpha']:.2f}, {p['beta']:.2f}) fit"
        )


def _cost_panel(ax, c: dict, color) -> None:
    tokens = np.array(list(c["cost"]["tokens_at_k"].values()), dtype=float)
    ax.plot(tokens, list(c["curve"].values()), color=color, marker=".", label=_label(c))


def plot(curves: list[dict], path: Path, references: Sequence[tuple[str, float]] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((pass_ax, fail_ax), (dist_ax, cost_ax)) = plt.subplots(2, 2, figsize=(12, 8.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, c in enumerate(x for x in curves if x["curve"]):
        color = colors[i % len(colors)]
        _pass_panel(pass_ax, c, color)
        _fail_panel(fail_ax, c, color)
        _distribution_panel(dist_ax, c, color)
        _cost_panel(cost_ax, c, color)
    for label, value in references:
        for ax in (pass_ax, cost_ax):
            ax.axhline(value, color="grey", linestyle="--", linewidth=1)
        pass_ax.annotate(
            label, (1, value), xytext=(2, 3), textcoords="offset points", fontsize=8, color="grey"
        )
    pass_ax.set(
        xscale="log",
        xlabel="k (samples per problem)",
        ylabel="pass@k",
        ylim=(0, 1),
        title="pass@k with 95 % bootstrap band",
    )
    fail_ax.set(xlabel="k", ylabel="fail@k = 1 - pass@k", title="fail@k, log-log, four fits")
    dist_ax.set(
        xscale="log",
        xlabel="per-problem success rate c/n (solved problems)",
        ylabel="problems",
        title="distribution of success rates",
    )
    cost_ax.set(
        xscale="log",
        xlabel="completion tokens spent",
        ylabel="coverage (pass@k)",
        ylim=(0, 1),
        title="coverage against tokens",
    )
    for ax in (pass_ax, fail_ax, dist_ax, cost_ax):
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a run without verdicts draws nothing to label
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
