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

import dataclasses
import datetime
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from engine.analysis.backtest import backtest
from engine.analysis.estimators import VERDICTS
from engine.analysis.html import write_html
from engine.analysis.load import Run, load_run
from engine.analysis.plots import plot as plot_figure
from engine.analysis.scaling import Settings, analyse
from engine.analysis.table import write_table
from engine.errors import InputError
from metrics.passk import ks_for, pass_at_k_table

ADAPTIVE_NOTE = (
    "under the {name} policy a problem's sample count depends on its results, so Chen's estimator"
    " is biased; the headline is the beta-binomial likelihood estimate, which stays valid"
)


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
    return (
        None if t is None else datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")
    )


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


def _estimate(policy: dict, chen: dict, fits: dict, every_sample_taken: bool = False) -> dict:
    """Which pass@k to believe: Chen's when every problem got the same samples whatever its
    results (uniform, or an adaptive run that took them all), the likelihood fit's otherwise."""
    adaptive = policy.get("name", "uniform") != "uniform" and not every_sample_taken
    bb = fits.get("beta_binomial", {})
    return {
        "headline": "beta_binomial" if adaptive else "chen",
        "chen_unbiased": not adaptive,
        "note": ADAPTIVE_NOTE.format(name=policy["name"]) if adaptive else None,
        "chen": chen,
        "beta_binomial": bb.get("pass_at_k") if bb.get("ok") else None,
    }


def analyse_run(run: Run, settings: Settings = Settings(), backtest_m: int | None = None) -> dict:
    """The report of one run, as the documented JSON object."""
    problems = run.counted()
    most = max([p.n for p in problems], default=0)
    settings = dataclasses.replace(
        settings,
        estimate_ks=tuple(ks_for(run.target.get("samples") or most)),
        policy=run.policy.get("name", "uniform"),
        stop_after=int(run.policy.get("stop_after") or 1),
        cap=run.target.get("samples"),
    )
    results: dict[str, int] = {}
    for p in run.problems:
        for result, count in p.results.items():
            results[result] = results.get(result, 0) + count
    counts = {p.task_id: (p.n, p.c) for p in problems}
    summary: dict[str, Any] = {
        "out": run.out,
        "model": run.sampling.get("model"),
        "samples": sum(p.n for p in problems),
        "problems": len(problems),
        "verdicts": {v: results.get(v, 0) for v in VERDICTS},
        "excluded": {r: n for r, n in results.items() if r not in VERDICTS},
        "pass_at_k": {str(k): round(s, 6) for k, s in pass_at_k_table(counts).items()},
        "target": settings.target,
        "policy": run.policy,
        "provenance": provenance(run),
    }
    if not problems:
        return {
            **summary,
            "tokens": 0,
            "n": 0,
            "coverage": None,
            "curve": {},
            "intervals": {},
            "fit": None,
            "fits": {},
            "backtest": None,
            "distribution": _distribution(run),
            "cost": _cost(run, []),
            "estimate": _estimate(run.policy, {}, {}),
        }
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
    estimate = _estimate(
        run.policy,
        summary["pass_at_k"],
        scaling["fits"],
        bool(run.target.get("samples")) and int(n.min()) >= run.target["samples"],
    )
    adaptive_counts = not estimate["chen_unbiased"]
    return {
        **summary,
        "tokens": cost["tokens"],
        "n": int(n.min()),
        # under an adaptive policy a problem unsolved has all its samples: the share solved is the coverage
        "coverage": cost["solved"] / len(problems) if adaptive_counts else curve[str(ks[-1])],
        "curve": curve,
        "intervals": scaling["intervals"],
        "fit": None if legacy is None else {"a": legacy.a, "b": legacy.b, "r2": legacy.r2},
        "fits": scaling["fits"],
        "backtest": tested if backtest_m is not None else None,
        "distribution": _distribution(run),
        "cost": cost,
        "estimate": estimate,
    }


def curve(run_dir: str, settings: Settings = Settings(), backtest_m: int | None = None) -> dict:
    """Load one run and analyse it."""
    return analyse_run(load_run(run_dir), settings, backtest_m)


# -- the command's outputs ----------------------------------------------------------------------


def parse_reference(text: str) -> tuple[str, float]:
    """'GPT-4o pass@1=0.902' -> ('GPT-4o pass@1', 0.902)."""
    label, _, value = text.rpartition("=")
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not label.strip() or not 0.0 <= number <= 1.0:
        raise InputError(f"--reference {text!r}: expected 'LABEL=VALUE' with VALUE between 0 and 1")
    return label.strip(), number


def figure_path(plot: str | None, run_dirs: list[str]) -> Path:
    """Where the figure goes: --plot as a file, or report.png in --plot's directory; by default
    the run's directory for one run and the current directory for several (never a run's own)."""
    if plot is None:
        return Path(run_dirs[0] if len(run_dirs) == 1 else ".") / "report.png"
    path = Path(plot)
    return path / "report.png" if path.is_dir() or not path.suffix else path


def make_report(
    run_dirs: list[str],
    settings: Settings,
    backtest_m: int | None,
    plot: str | None,
    no_plot: bool,
    table: str | None,
    references: list[str],
) -> tuple[dict, str]:
    """Analyse every run, write the table, figure and HTML asked for; the JSON summary and the text."""
    from engine.analysis.text import render

    lines_of_reference = [parse_reference(r) for r in references]
    runs = [load_run(d) for d in run_dirs]
    curves = [analyse_run(run, settings, backtest_m) for run in runs]
    text = [render(curves)]
    outputs: dict[str, str | None] = {"plot": None, "html": None, "table": None}
    if table is not None:
        count = write_table(runs, Path(table))
        outputs["table"] = table
        text.append(f"table: {table} ({count} problems)")
    if not no_plot:
        png = figure_path(plot, run_dirs)
        try:
            png.parent.mkdir(parents=True, exist_ok=True)
            plot_figure(curves, png, lines_of_reference)
            write_html(curves, png, png.with_suffix(".html"))
        except OSError as exc:
            raise InputError(f"cannot write {png}: {exc.strerror}") from exc
        outputs["plot"], outputs["html"] = str(png), str(png.with_suffix(".html"))
        text.append(f"plot: {png}\nhtml: {outputs['html']}")
    references_json = [{"label": label, "value": value} for label, value in lines_of_reference]
    return {**curves[0], "runs": curves, "references": references_json, **outputs}, "\n".join(text)
