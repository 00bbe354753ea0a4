"""The final summary of a command: as a table for people, as one JSON object for scripts."""

from __future__ import annotations

from metrics.passk import pass_at_k_table

VERDICT_ORDER = ("passed", "failed", "timeout", "oom", "error")


def summarize(counts: dict[str, tuple[int, int]], verdicts: dict[str, int], **extra) -> dict:
    """The DESIGN.md summary: samples, verdicts, pass_at_k (+ whatever the command adds)."""
    table = pass_at_k_table(counts)
    return {
        "samples": sum(verdicts.values()),
        "problems": len(counts),
        "verdicts": {v: verdicts.get(v, 0) for v in VERDICT_ORDER},
        "pass_at_k": {str(k): round(score, 6) for k, score in table.items()},
        **extra,
    }


def render(summary: dict, title: str) -> str:
    lines = [title]
    verdicts = summary["verdicts"]
    lines.append("verdicts: " + ", ".join(f"{v} {verdicts[v]:,}" for v in VERDICT_ORDER))
    if summary["pass_at_k"]:
        lines.append(f"{'k':>7}  {'pass@k':>8}  {'fail@k':>8}")
        for k, score in summary["pass_at_k"].items():
            lines.append(f"{k:>7}  {score:>8.4f}  {1 - score:>8.4f}")
    else:
        lines.append("no verified samples yet")
    return "\n".join(lines)
