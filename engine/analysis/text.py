"""The report's text for people: one block per run."""

from __future__ import annotations

from engine.analysis.fits import LABELS, METHODS
from engine.analysis.suites import suite_lines


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
    lines = [
        f"  {'fit':<40} {'exponent':<22}"
        + "".join(f"{'pass@' + k:<24}" for k in horizons)
        + f"k for {c['target']:.0%}"
    ]
    for method in METHODS:
        f = c["fits"][method]
        if not f["ok"]:
            lines.append(f"  {f['label']:<40} not fitted: {f['note']}")
            continue
        cells = "".join(f"{_with_interval(f['predict'][k]):<24}" for k in horizons)
        lines.append(
            f"  {f['label']:<40} {_with_interval(f['exponent']):<22}{cells}{_k_text(f['k_for_target'])}"
        )
    bb = c["fits"]["beta_binomial"]
    if bb["ok"]:
        p = bb["params"]
        mass = (
            f"never-solvable share {_with_interval(p['zero_mass'])}"
            if p["zero_mass"]["value"]
            else "no never-solvable share (the likelihood-ratio test does not ask for one)"
        )
        scale = (
            f"rates scaled by {_with_interval(p['scale'])}"
            if p["scale"]["value"] < 1
            else "no scale below 1 (the likelihood-ratio test does not ask for one)"
        )
        lines.append(
            f"  beta-binomial: alpha {_with_interval(p['alpha'])}, beta {_with_interval(p['beta'])}, {mass}, {scale}"
        )
    return lines


def _render_backtest(b: dict) -> list[str]:
    lines = [
        f"  backtest: fitted on the first {b['m']} samples, predicting pass@{b['k']} (observed {b['observed']:.4f})"
    ]
    for method in METHODS:
        m = b["methods"][method]
        outcome = (
            f"not fitted: {m['note']}"
            if m["predicted"] is None
            else f"{m['predicted']:.4f}  error {m['error']:+.4f}"
        )
        lines.append(f"    {LABELS[method]:<40} {outcome}")
    return lines


def _render_adaptive(c: dict) -> list[str]:
    e = c["estimate"]
    lines = [f"  NOTE: {e['note']}", f"  {'k':>7}  {'likelihood':>28}  {'Chen (biased)':>13}"]
    for k, s in (e["beta_binomial"] or {}).items():
        chen = e["chen"].get(k)
        lines.append(f"  {k:>7}  {_with_interval(s, 4):>28}  {'-' if chen is None else f'{chen:.4f}':>13}")
    if e["beta_binomial"] is None:
        lines.append(f"  the likelihood fit is not available: {c['fits']['beta_binomial']['note']}")
    return lines


def render_one(c: dict) -> list[str]:
    excluded = ", ".join(f"{n:,} {r}" for r, n in c["excluded"].items())
    lines = [
        f"{c['out']}: model {c['model']}, {c['samples']:,} samples of {c['problems']} problems"
        + (f" ({excluded} excluded from n)" if excluded else "")
    ]
    if not c["curve"]:
        return lines + ["  no verified samples yet"]
    if c["estimate"]["note"]:
        lines += _render_adaptive(c)
    lines.append(f"  {'k':>7}  {'pass@k':>8}  {'95% interval':>18}  {'SE':>7}  {'fail@k':>8}")
    for k in c["pass_at_k"]:
        iv = c["intervals"][k]
        se = "-" if iv["se"] is None else f"{iv['se']:.4f}"
        lines.append(
            f"  {k:>7}  {iv['value']:>8.4f}  [{iv['lo']:.4f}, {iv['hi']:.4f}]  {se:>7}  {1 - iv['value']:>8.4f}"
        )
    if c["estimate"]["note"]:
        lines.append(f"  coverage (share of problems solved) {c['coverage']:.4f}")
    else:
        lines.append(f"  coverage (pass@{c['n']}) {c['coverage']:.4f}")
    lines += suite_lines(c)
    if c["fit"]:
        f = c["fit"]
        lines.append(f"  fail@k ~= {f['a']:.3f} * k^{f['b']:.3f}  (log-log fit, R^2 {f['r2']:.3f})")
    lines += _render_fits(c)
    if c["backtest"]:
        lines += _render_backtest(c["backtest"])
    d, cost = c["distribution"], c["cost"]
    lines.append(
        f"  distribution: {d['never_solved']} of {d['problems']} problems never solved,"
        f" {d['always_solved']} solved by every sample"
    )
    per_solved = (
        "-" if cost["tokens_per_solved_problem"] is None else f"{cost['tokens_per_solved_problem']:,.0f}"
    )
    lines.append(
        f"  cost: {cost['tokens']:,} completion tokens, {cost['tokens_per_sample']:,.1f} per sample,"
        f" {per_solved} per solved problem ({cost['solved']} solved)"
    )
    return lines


def render(curves: list[dict]) -> str:
    return "\n".join(line for c in curves for line in render_one(c))
