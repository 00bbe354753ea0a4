"""The self-contained HTML report: the figure inlined as a base64 PNG, tables, provenance.
No script, no stylesheet or font from elsewhere: one file to attach to a paper's appendix."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from engine.analysis.fits import LABELS, METHODS
from engine.analysis.suites import suite_html

STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{color:#a33}code{font-size:90%}"""


def _cell(s: dict | None, digits: int = 4) -> str:
    if s is None or s.get("value") is None:
        return "unreachable"
    if s.get("lo") is None or s.get("hi") is None:
        return f"{s['value']:.{digits}g}"
    return f"{s['value']:.{digits}g} [{s['lo']:.{digits}g}, {s['hi']:.{digits}g}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pass_table(c: dict) -> str:
    rows = [
        [
            k,
            f"{iv['value']:.4f}",
            f"[{iv['lo']:.4f}, {iv['hi']:.4f}]",
            "-" if iv["se"] is None else f"{iv['se']:.4f}",
            f"{1 - iv['value']:.4f}",
        ]
        for k, iv in c["intervals"].items()
        if k in c["pass_at_k"]
    ]
    return _table(["k", "pass@k", "95 % bootstrap interval", "analytic SE", "fail@k"], rows)


def _fits_table(c: dict) -> str:
    horizons = list(next((f["predict"] for f in c["fits"].values() if f["ok"]), {}))
    rows = []
    for method in METHODS:
        f = c["fits"][method]
        if not f["ok"]:
            rows.append([LABELS[method], f"not fitted: {f['note']}"] + [""] * (len(horizons) + 2))
            continue
        params = ", ".join(f"{name} {_cell(s, 3)}" for name, s in f["params"].items())
        rows.append(
            [
                LABELS[method],
                params,
                _cell(f["exponent"], 3),
                *(_cell(f["predict"][k]) for k in horizons),
                _cell(f["k_for_target"], 3),
            ]
        )
    header = ["fit", "parameters", "exponent", *(f"pass@{k}" for k in horizons), f"k for {c['target']:.0%}"]
    return _table(header, rows)


def _backtest_table(b: dict) -> str:
    rows = [
        [
            LABELS[m],
            "-" if r["predicted"] is None else f"{r['predicted']:.4f}",
            r["note"] if r["error"] is None else f"{r['error']:+.4f}",
        ]
        for m, r in b["methods"].items()
    ]
    return (
        f"<p>Fitted on the first {b['m']} samples of every problem, predicting pass@{b['k']}; "
        f"observed {b['observed']:.4f}.</p>" + _table(["method", "predicted", "error"], rows)
    )


def _adaptive(c: dict) -> list[str]:
    """Under an adaptive policy: the note, and the likelihood estimate beside Chen's."""
    e = c["estimate"]
    if not e["note"]:
        return []
    rows = [
        [k, _cell(s), "-" if e["chen"].get(k) is None else f"{e['chen'][k]:.4f}"]
        for k, s in (e["beta_binomial"] or {}).items()
    ]
    return [
        f'<p class="note">{escape(e["note"])}.</p>',
        _table(["k", "pass@k, likelihood (headline)", "Chen (biased)"], rows),
    ]


def _run_section(c: dict) -> str:
    parts = [
        f"<h2>{escape(c['out'])}</h2>",
        "<h3>Provenance</h3>",
        f"<pre>{escape(json.dumps(c['provenance'], indent=2))}</pre>",
    ]
    if not c["curve"]:
        return "".join(parts) + "<p>No verified samples yet.</p>"
    d, cost = c["distribution"], c["cost"]
    excluded = ", ".join(f"{n} {r}" for r, n in c["excluded"].items()) or "none"
    parts += [
        f"<p>{c['samples']:,} samples of {c['problems']} problems (excluded from n: {escape(excluded)}); "
        f"coverage pass@{c['n']} = {c['coverage']:.4f}. {d['never_solved']} problems never solved, "
        f"{d['always_solved']} solved by every sample. {cost['tokens']:,} completion tokens: "
        f"{cost['tokens_per_sample'] or 0:,.1f} per sample, {cost['tokens_per_solved_problem'] or 0:,.0f} per solved problem.</p>",
        *_adaptive(c),
        "<h3>pass@k</h3>",
        _pass_table(c),
        suite_html(c),
        "<h3>Fits and extrapolation</h3>",
        _fits_table(c),
    ]
    if c["backtest"]:
        parts += ["<h3>Backtest</h3>", _backtest_table(c["backtest"])]
    return "".join(parts)


def write_html(curves: list[dict], figure: Path | None, path: Path) -> None:
    image = ""
    if figure is not None:
        encoded = base64.b64encode(figure.read_bytes()).decode()
        image = f'<img alt="pass@k, fail@k with fits, success-rate distribution, coverage against tokens" src="data:image/png;base64,{encoded}">'
    body = "".join(_run_section(c) for c in curves)
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>engine report</title><style>{STYLE}</style></head>"
        f"<body><h1>engine report</h1>{image}{body}</body></html>"
    )
