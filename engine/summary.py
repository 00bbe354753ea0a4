"""The final summary of a command: as a table for people, as one JSON object for scripts."""

from __future__ import annotations

from metrics.passk import pass_at_k_table

VERDICT_ORDER = ("passed", "failed", "timeout", "oom", "error")
INFRA_ERROR = "infra_error"  # the sandbox failed: not a verdict about the program


def summarize(counts: dict[str, tuple[int, int]], verdicts: dict[str, int], **extra) -> dict:
    """The DESIGN.md summary: samples, verdicts, pass_at_k (+ whatever the command adds).
    `verdicts` may hold "infra_error": those samples count in `samples` and `infra_errors`, not
    among the verdicts (`counts`, the (n, c) per problem, must leave them out too)."""
    table = pass_at_k_table(counts)
    return {
        "samples": sum(verdicts.values()),
        "problems": len(counts),
        "verdicts": {v: verdicts.get(v, 0) for v in VERDICT_ORDER},
        "infra_errors": verdicts.get(INFRA_ERROR, 0),
        "pass_at_k": {str(k): round(score, 6) for k, score in table.items()},
        **extra,
    }


def render(summary: dict, title: str) -> str:
    lines = [title]
    verdicts = summary["verdicts"]
    lines.append("verdicts: " + ", ".join(f"{v} {verdicts[v]:,}" for v in VERDICT_ORDER)
                 + (f"; infrastructure errors {summary['infra_errors']:,} (not in pass@k)" if summary.get("infra_errors") else ""))  # fmt: skip
    if summary["pass_at_k"]:
        lines.append(f"{'k':>7}  {'pass@k':>8}  {'fail@k':>8}")
        for k, score in summary["pass_at_k"].items():
            lines.append(f"{k:>7}  {score:>8.4f}  {1 - score:>8.4f}")
    else:
        lines.append("no verified samples yet")
    return "\n".join(lines)
