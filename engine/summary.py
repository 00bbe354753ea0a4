"""The final summary of a command: as a table for people, as one JSON object for scripts.

One TypedDict per command's `--json` object (README's tables are the contract); every one that
reports pass@k builds it with `pass_at_k_columns`, so `run`, `status` and `verify` show the same
k columns for the same counts.
"""

from __future__ import annotations

from typing import TypedDict

from metrics.passk import pass_at_k_table
from sandbox.verdicts import Verdict

VERDICT_ORDER = ("passed", "failed", "timeout", "oom", "error")
INFRA_ERROR = Verdict.infra_error.value  # the sandbox failed: not a verdict about the program


class Summary(TypedDict):
    """What every summary holds (DESIGN.md)."""

    samples: int
    problems: int
    verdicts: dict[str, int]
    infra_errors: int
    pass_at_k: dict[str, float]


class RunSummary(Summary):
    flagged_references: dict[str, str]  # task_id -> why its reference fails its own tests (still scored)
    model: str
    out: str
    tokens: int
    elapsed_s: float
    generation_failures: int
    new_samples: int
    new_tokens: int
    target: int
    stopped: bool
    missing: int


class VerifySummary(Summary):
    out: str
    rerun: int
    reused: int


class StatusSummary(TypedDict):
    out: str
    model: str | None
    running: bool
    last_write_s_ago: float | None
    target: int
    samples: int
    generated: int
    remaining: int
    generation_failures: int
    tokens: int
    servers_up: int | None
    servers: int | None
    no_progress_s: float | None
    verdicts: dict[str, int]
    rate_per_s: float
    eta_s: int | None
    pass_at_k: dict[str, float]
    tests: dict[str, float | int] | None  # multi-test kinds: Store.test_counts(); None otherwise
    flagged_references: dict[str, str]  # as RunSummary's, from the last preflight


class SelfTestRow(TypedDict):
    exploit: str
    task_id: str
    without_guards: str
    with_guards: str
    detail: str


class SelfTestSummary(TypedDict):
    exploits: int
    guards: bool
    passed: int
    rows: list[SelfTestRow]


def pass_at_k_columns(counts: dict[str, tuple[int, int]]) -> dict[str, float]:
    """{"k": mean pass@k}: the usual ks up to the fewest samples any problem has, so every
    column averages over every problem."""
    return {str(k): round(score, 6) for k, score in pass_at_k_table(counts).items()}


def verdict_columns(verdicts: dict[str, int]) -> dict[str, int]:
    return {v: verdicts.get(v, 0) for v in VERDICT_ORDER}


def summarize(counts: dict[str, tuple[int, int]], verdicts: dict[str, int]) -> Summary:
    """The DESIGN.md summary: samples, verdicts, pass_at_k; each command adds its own fields.
    `verdicts` may hold "infra_error": those samples count in `samples` and `infra_errors`, not
    among the verdicts (`counts`, the (n, c) per problem, must leave them out too)."""
    return Summary(
        samples=sum(verdicts.values()),
        problems=len(counts),
        verdicts=verdict_columns(verdicts),
        infra_errors=verdicts.get(INFRA_ERROR, 0),
        pass_at_k=pass_at_k_columns(counts),
    )


def render(summary: Summary, title: str) -> str:
    lines = [title]
    verdicts = summary["verdicts"]
    lines.append(
        "verdicts: "
        + ", ".join(f"{v} {verdicts[v]:,}" for v in VERDICT_ORDER)
        + (
            f"; infrastructure errors {summary['infra_errors']:,} (not in pass@k)"
            if summary.get("infra_errors")
            else ""
        )
    )
    if isinstance(flagged := summary.get("flagged_references"), dict) and flagged:  # RunSummary's
        lines.append(flagged_line(flagged))
    if summary["pass_at_k"]:
        lines.append(f"{'k':>7}  {'pass@k':>8}  {'fail@k':>8}")
        for k, score in summary["pass_at_k"].items():
            lines.append(f"{k:>7}  {score:>8.4f}  {1 - score:>8.4f}")
    else:
        lines.append("no verified samples yet")
    return "\n".join(lines)


def flagged_line(flagged: dict[str, str]) -> str:
    """The problems whose reference fails its own tests: scored as usual, so said by name."""
    named = "; ".join(f"{task} ({why})" for task, why in list(flagged.items())[:10])
    more = f"; and {len(flagged) - 10} more" if len(flagged) > 10 else ""
    return (
        f"flagged: {len(flagged)} problems whose reference fails its own tests, still scored: {named}{more}"
    )
