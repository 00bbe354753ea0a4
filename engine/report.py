"""`engine report`: pass@k with intervals, four fits of the scaling law side by side, their
extrapolations and a backtest, the distribution of per-problem success rates and the cost, one
analysis per run.

Repeated sampling's scaling law (Brown et al. 2024): fail@k falls roughly as a power law in k.
Successive points of a pass@k curve come from the same samples, so a line through them is
statistically weak (Kazdan et al. 2025); the law comes from the distribution of per-problem
success rates, which the beta-binomial fit models directly (Schaeffer et al. 2025). The
statistics live in `engine.analysis`; this module assembles them into the report's JSON
(the schema in the README) and its text.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from engine.analysis.backtest import backtest
from engine.analysis.estimators import VERDICTS
from engine.analysis.fits import LABELS, METHODS
from engine.analysis.load import Run, load_run
from engine.analysis.scaling import Settings, analyse
from engine.errors import InputError
from metrics.passk import pass_at_k_table


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


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")


def _engine_version() -> str:
    try:
        return version("engine")
    except PackageNotFoundError:
        return "unknown"


def provenance(run: Run) -> dict:
    sampling = dict(run.sampling)
    return {
        "model": sampling.pop("model", None),
        "dataset": sampling.pop("dataset", None),
        "sampling": sampling,
        "target": run.target,
        "sandbox": {"backends": run.backends, "limits": run.limits},
        "engine_version": _engine_version(),
        "started": _iso(run.started),
        "finished": _iso(run.finished),
    }


def _cost(run: Run, ks: list[int]) -> dict:
    """Completion tokens per sample and per solved problem; tokens spent to reach each k."""
    problems = run.counted()
    tokens = sum(sum(p.tokens) for p in problems)
    samples = sum(p.n for p in problems)
    solved = sum(1 for p in problems if p.c)
    spent = [np.cumsum(p.tokens) for p in problems]
    return {
        "tokens": tokens,
        "tokens_per_sample": tokens / samples if samples else None,
        "solved": solved,
        "tokens_per_solved_problem": tokens / solved if solved else None,
        "tokens_at_k": {str(k): int(sum(s[min(k, len(s)) - 1] for s in spent)) for k in ks},
    }


def _distribution(run: Run) -> dict:
    problems = run.counted()
    return {
        "problems": len(problems),
        "never_solved": sum(1 for p in problems if p.c == 0),
        "always_solved": sum(1 for p in problems if p.c == p.n),
        "p_hat": [p.c / p.n for p in problems],
        "n": [p.n for p in problems],
    }


def analyse_run(run: Run, settings: Settings = Settings(), backtest_m: int | None = None) -> dict:
    """The report of one run, as the documented JSON object."""
    problems = run.counted()
    results: dict[str, int] = {}
    for p in run.problems:
        for result, count in p.results.items():
            results[result] = results.get(result, 0) + count
    counts = {p.task_id: (p.n, p.c) for p in problems}
    summary = {
        "out": run.out,
        "model": run.sampling.get("model"),
        "samples": sum(p.n for p in problems),
        "problems": len(problems),
        "verdicts": {v: results.get(v, 0) for v in VERDICTS},
        "excluded": {r: n for r, n in results.items() if r not in VERDICTS},
        "pass_at_k": {str(k): round(s, 6) for k, s in pass_at_k_table(counts).items()},
        "target": settings.target,
        "provenance": provenance(run),
    }
    if not problems:
        return {**summary, "tokens": 0, "n": 0, "coverage": None, "curve": {}, "intervals": {}, "fit": None,
                "fits": {}, "backtest": None, "distribution": _distribution(run), "cost": _cost(run, [])}  # fmt: skip
    n = np.array([p.n for p in problems])
    c = np.array([p.c for p in problems])
    scaling = analyse(n, c, settings)
    ks = scaling["ks"]
    curve = {str(k): iv["value"] for k, iv in scaling["intervals"].items()}
    legacy = fit_power_law(ks, [1 - p for p in curve.values()])
    if backtest_m is not None:
        try:
            tested = backtest(run.outcomes(), backtest_m)
        except ValueError as exc:
            raise InputError(f"{run.out}: {exc}") from exc
    cost = _cost(run, ks)
    return {
        **summary,
        "tokens": cost["tokens"],
        "n": int(n.min()),
        "coverage": curve[str(ks[-1])],
        "curve": curve,
        "intervals": scaling["intervals"],
        "fit": None if legacy is None else {"a": legacy.a, "b": legacy.b, "r2": legacy.r2},
        "fits": scaling["fits"],
        "backtest": tested if backtest_m is not None else None,
        "distribution": _distribution(run),
        "cost": cost,
    }


def curve(run_dir: str, settings: Settings = Settings(), backtest_m: int | None = None) -> dict:
    """Load one run and analyse it."""
    return analyse_run(load_run(run_dir), settings, backtest_m)


# -- text -------------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _with_interval(s: dict | None, digits: int = 3) -> str:
    if s is None or s.get("value") is None:
        return "unreachable"
    if s["lo"] is None and s["hi"] is None:
        return _num(s["value"], digits)
    return f"{_num(s['value'], digits)} [{_num(s['lo'], digits)}, {_num(s['hi'], digits)}]"


def _k_text(s: dict) -> str:
    if s["value"] is None:
        return "beyond 1e12"
    hi = "1e12+" if s["hi"] is None else f"{s['hi']:,.0f}"
    lo = "-" if s["lo"] is None else f"{s['lo']:,.0f}"
    return f"{s['value']:,.0f} [{lo}, {hi}]"


def _render_fits(c: dict) -> list[str]:
    horizons = list(next((f["predict"] for f in c["fits"].values() if f["ok"]), {}))
    lines = [f"  {'fit':<40} {'exponent':<22}" + "".join(f"{'pass@' + k:<24}" for k in horizons)
             + f"k for {c['target']:.0%}"]  # fmt: skip
    for method in METHODS:
        f = c["fits"][method]
        if not f["ok"]:
            lines.append(f"  {f['label']:<40} not fitted: {f['note']}")
            continue
        cells = "".join(f"{_with_interval(f['predict'][k]):<24}" for k in horizons)
        lines.append(f"  {f['label']:<40} {_with_interval(f['exponent']):<22}{cells}{_k_text(f['k_for_target'])}")
    bb = c["fits"]["beta_binomial"]
    if bb["ok"]:
        p = bb["params"]
        lines.append(f"  beta-binomial: alpha {_with_interval(p['alpha'])}, beta {_with_interval(p['beta'])},"
                     f" never-solvable share {_with_interval(p['zero_mass'])}")  # fmt: skip
    return lines


def _render_backtest(b: dict) -> list[str]:
    lines = [f"  backtest: fitted on the first {b['m']} samples, predicting pass@{b['k']} (observed {b['observed']:.4f})"]
    for method in METHODS:
        m = b["methods"][method]
        outcome = f"not fitted: {m['note']}" if m["predicted"] is None else f"{m['predicted']:.4f}  error {m['error']:+.4f}"
        lines.append(f"    {LABELS[method]:<40} {outcome}")
    return lines


def render_one(c: dict) -> list[str]:
    excluded = ", ".join(f"{n:,} {r}" for r, n in c["excluded"].items())
    lines = [f"{c['out']}: model {c['model']}, {c['samples']:,} samples of {c['problems']} problems"
             + (f" ({excluded} excluded from n)" if excluded else "")]  # fmt: skip
    if not c["curve"]:
        return lines + ["  no verified samples yet"]
    lines.append(f"  {'k':>7}  {'pass@k':>8}  {'95% interval':>18}  {'SE':>7}  {'fail@k':>8}")
    for k in c["pass_at_k"]:
        iv = c["intervals"][k]
        se = "-" if iv["se"] is None else f"{iv['se']:.4f}"
        lines.append(f"  {k:>7}  {iv['value']:>8.4f}  [{iv['lo']:.4f}, {iv['hi']:.4f}]  {se:>7}  {1 - iv['value']:>8.4f}")
    lines.append(f"  coverage (pass@{c['n']}) {c['coverage']:.4f}")
    if c["fit"]:
        f = c["fit"]
        lines.append(f"  fail@k ~= {f['a']:.3f} * k^{f['b']:.3f}  (log-log fit, R^2 {f['r2']:.3f})")
    lines += _render_fits(c)
    if c["backtest"]:
        lines += _render_backtest(c["backtest"])
    d, cost = c["distribution"], c["cost"]
    lines.append(f"  distribution: {d['never_solved']} of {d['problems']} problems never solved,"
                 f" {d['always_solved']} solved by every sample")  # fmt: skip
    per_solved = "-" if cost["tokens_per_solved_problem"] is None else f"{cost['tokens_per_solved_problem']:,.0f}"
    lines.append(f"  cost: {cost['tokens']:,} completion tokens, {cost['tokens_per_sample']:,.1f} per sample,"
                 f" {per_solved} per solved problem ({cost['solved']} solved)")  # fmt: skip
    return lines


def render(curves: list[dict]) -> str:
    return "\n".join(line for c in curves for line in render_one(c))
