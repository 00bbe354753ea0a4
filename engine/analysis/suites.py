"""Multi-test runs in the report: EvalPlus-style base and plus suites side by side, and the
mean fraction of tests passed.

An EvalPlus-style sample `passed` when it passes the plus suite (base + plus inputs), and
`base_passed` on the base suite alone (the original HumanEval/MBPP tests). pass@k on each suite,
and the gap: samples passing base but failing plus are the weak suite's false positives."""

from __future__ import annotations

from html import escape

from engine.analysis.load import ProblemSamples
from metrics.passk import pass_at_k_table


def analyse_suites(problems: list[ProblemSamples]) -> dict | None:
    """Base against plus, or None when no sample was judged on a base suite. A counted sample
    without a base verdict (its run stopped before the driver reported) counts as failing base."""
    if not any(b is not None for p in problems for b in p.base_passed):
        return None
    base = {p.task_id: (p.n, sum(bool(b) for b in p.base_passed)) for p in problems}
    plus = {p.task_id: (p.n, p.c) for p in problems}
    base_k, plus_k = pass_at_k_table(base), pass_at_k_table(plus)
    base_passes = sum(c for _, c in base.values())
    false_positives = sum(
        bool(b) and not ok for p in problems for b, ok in zip(p.base_passed, p.passed, strict=True)
    )
    return {
        "base": {"pass_at_k": _rounded(base_k), "passed": base_passes},
        "plus": {"pass_at_k": _rounded(plus_k), "passed": sum(c for _, c in plus.values())},
        "gap": {
            "pass_at_k": {str(k): round(base_k[k] - plus_k[k], 6) for k in base_k},
            "false_positives": false_positives,  # samples passing base, failing plus
            "false_positive_share": round(false_positives / base_passes, 6) if base_passes else None,
            "problems": sum(  # problems where the base suite accepts a sample plus rejects
                any(bool(b) and not ok for b, ok in zip(p.base_passed, p.passed, strict=True))
                for p in problems
            ),
        },
    }


def analyse_tests(problems: list[ProblemSamples]) -> dict | None:
    """The mean fraction of tests passed (the RL reward) over the counted samples that have one."""
    fractions = [f for p in problems for f in p.fraction if f is not None]
    if not fractions:
        return None
    return {"samples": len(fractions), "mean_fraction_passed": round(sum(fractions) / len(fractions), 6)}


def _rounded(table: dict[int, float]) -> dict[str, float]:
    return {str(k): round(v, 6) for k, v in table.items()}


def suite_lines(c: dict) -> list[str]:
    """The text report's lines about suites and tests (none for single-test runs)."""
    lines = []
    if s := c.get("suites"):
        lines.append(
            f"  {'k':>7}  {'base':>8}  {'plus':>8}  {'gap':>8}   (EvalPlus-style: pass@k on each suite)"
        )
        for k, gap in s["gap"]["pass_at_k"].items():
            lines.append(
                f"  {k:>7}  {s['base']['pass_at_k'][k]:>8.4f}  {s['plus']['pass_at_k'][k]:>8.4f}  {gap:>8.4f}"
            )
        lines.append("  " + _gap_sentence(s))
    if t := c.get("tests"):
        lines.append(
            f"  tests passed: mean fraction {t['mean_fraction_passed']:.4f} over {t['samples']:,} samples"
        )
    return lines


def suite_html(c: dict) -> str:
    """The HTML report's section about suites and tests ('' for single-test runs)."""
    parts = []
    if s := c.get("suites"):
        rows = "".join(
            f"<tr><td>{escape(k)}</td><td>{s['base']['pass_at_k'][k]:.4f}</td>"
            f"<td>{s['plus']['pass_at_k'][k]:.4f}</td><td>{gap:.4f}</td></tr>"
            for k, gap in s["gap"]["pass_at_k"].items()
        )
        parts += [
            "<h3>Base and plus suites</h3>",
            f"<table><tr><th>k</th><th>pass@k base</th><th>pass@k plus</th><th>gap</th></tr>{rows}</table>",
            f"<p>{escape(_gap_sentence(s))}</p>",
        ]
    if t := c.get("tests"):
        parts.append(
            f"<p>Tests passed: mean fraction {t['mean_fraction_passed']:.4f} over {t['samples']:,} samples.</p>"
        )
    return "".join(parts)


def _gap_sentence(s: dict) -> str:
    g = s["gap"]
    share = "" if g["false_positive_share"] is None else f" ({g['false_positive_share']:.1%} of base passes)"
    return (
        f"false positives of the base suite: {g['false_positives']:,} samples pass base but fail plus{share},"
        f" in {g['problems']} problems"
    )
