"""`engine report`: pass@k, coverage and fail@k with its power-law fit, one curve per run.

Repeated sampling's scaling law (Brown et al. 2024): fail@k falls as a power law in k, a
straight line on log-log axes; the fit log fail@k = log a + b log k says how fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.store import Store
from engine.summary import summarize
from metrics.passk import ks_for, pass_at_k_table


@dataclass(frozen=True, slots=True)
class PowerLaw:
    a: float
    b: float  # the exponent, negative when more samples help
    r2: float

    def __call__(self, k):
        return self.a * np.power(k, self.b)


def fit_power_law(ks: list[int], fail: list[float]) -> PowerLaw | None:
    """Least squares on log-log axes over the points with fail@k > 0; None with fewer than 3."""
    points = [(k, f) for k, f in zip(ks, fail) if f > 0]
    if len(points) < 3:
        return None
    x = np.log([k for k, _ in points])
    y = np.log([f for _, f in points])
    b, log_a = np.polyfit(x, y, 1)
    residual = y - (log_a + b * x)
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - float(np.sum(residual**2) / total) if total > 0 else 1.0
    return PowerLaw(float(np.exp(log_a)), float(b), r2)


def curve(run_dir: str) -> dict:
    """Summary of one run plus its full pass@k curve (every k up to the smallest n) and fit."""
    store = Store.open(run_dir, create=False)
    try:
        counts = store.pass_counts()
        summary = summarize(counts, store.verdict_counts(), out=run_dir)
        summary["model"] = (store.get_meta("sampling") or {}).get("model")
        summary["tokens"] = store.totals()["tokens"]
    finally:
        store.close()
    if not counts:
        return {**summary, "curve": {}, "fit": None}
    n_min = min(n for n, _ in counts.values())
    dense = sorted(set(np.unique(np.geomspace(1, n_min, num=min(n_min, 60)).round().astype(int))) | set(ks_for(n_min)))
    table = pass_at_k_table(counts, dense)
    fit = fit_power_law(list(table), [1 - p for p in table.values()])
    summary["coverage"] = table[n_min]
    summary["curve"] = {str(k): p for k, p in table.items()}
    summary["fit"] = None if fit is None else {"a": fit.a, "b": fit.b, "r2": fit.r2}
    return summary


def render(curves: list[dict]) -> str:
    lines = []
    for c in curves:
        lines.append(f"{c['out']}: model {c['model']}, {c['samples']:,} samples of {c['problems']} problems")
        if not c["curve"]:
            lines.append("  no verified samples yet")
            continue
        lines.append(f"  {'k':>7}  {'pass@k':>8}  {'fail@k':>8}")
        for k, p in c["pass_at_k"].items():
            lines.append(f"  {k:>7}  {p:>8.4f}  {1 - p:>8.4f}")
        lines.append(f"  coverage (pass@{max(map(int, c['curve']))}) {c['coverage']:.4f}")
        if c["fit"]:
            f = c["fit"]
            lines.append(f"  fail@k ~= {f['a']:.3f} * k^{f['b']:.3f}  (log-log fit, R^2 {f['r2']:.3f})")
    return "\n".join(lines)


def plot(curves: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for c in curves:
        if not c["curve"]:
            continue
        ks = np.array([int(k) for k in c["curve"]])
        passes = np.array(list(c["curve"].values()))
        label = f"{c['model']} ({Path(c['out']).name})"
        left.plot(ks, passes, marker=".", label=label)
        line = right.loglog(ks, 1 - passes, marker=".", linestyle="none", label=label)[0]
        if c["fit"]:
            f = c["fit"]
            right.loglog(ks, f["a"] * ks ** f["b"], linestyle="--", color=line.get_color(),
                         label=f"fit: {f['a']:.2f}·k^{f['b']:.2f}")
    left.set(xscale="log", xlabel="k (samples)", ylabel="pass@k (coverage)", title="pass@k", ylim=(0, 1))
    right.set(xlabel="k (samples)", ylabel="fail@k = 1 - pass@k", title="fail@k, log-log, power-law fit")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
