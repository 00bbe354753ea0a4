"""`engine status`: where a run stands, also while another process is running it."""

from __future__ import annotations

import os
import socket
import time

from engine.store import FLAGGED, Store
from engine.summary import StatusSummary, flagged_line, pass_at_k_columns, verdict_columns
from engine.sweep.snapshot import STALL_AFTER_S

RATE_WINDOW_S = 60.0
ALIVE_AFTER_S = 10.0  # a heartbeat older than this means nobody is running the sweep


def run_status(run_dir: str, now: float | None = None) -> StatusSummary:
    now = time.time() if now is None else now
    store = Store.open(run_dir, create=False)
    try:
        target = store.get_meta("target") or {}
        sampling = store.get_meta("sampling") or {}
        beat = store.get_meta("heartbeat")
        totals = store.totals()
        counts = store.pass_counts()
        verdicts = store.verdict_counts()
        rate = store.verified_since(now - RATE_WINDOW_S) / RATE_WINDOW_S
        last_verdict = store.last_verified_at()
        tests = store.test_counts()
        flagged = store.get_meta(FLAGGED) or {}
    finally:
        store.close()
    wanted = target.get("problems", 0) * target.get("samples", 0)
    no_progress = _no_progress_s(beat, last_verdict, now)
    running = _alive(beat, now)
    stalled = running and no_progress is not None and no_progress >= STALL_AFTER_S  # no ETA from a stale rate
    remaining = max(0, wanted - totals["verified"])
    return StatusSummary(
        out=run_dir,
        model=sampling.get("model"),
        running=running,
        last_write_s_ago=None if beat is None else round(now - beat["time"], 1),
        target=wanted,
        samples=totals["verified"],
        generated=totals["samples"],
        remaining=remaining,
        generation_failures=totals["generation_failures"],
        tokens=totals["tokens"],
        servers_up=(beat or {}).get("servers_up"),
        servers=(beat or {}).get("servers"),
        no_progress_s=no_progress,
        verdicts=verdict_columns(verdicts),
        rate_per_s=round(rate, 3),
        eta_s=None
        if stalled
        else round(remaining / rate)
        if rate > 0 and remaining
        else (0 if not remaining else None),
        pass_at_k=pass_at_k_columns(counts),  # the same columns as `engine run` shows
        tests=tests,
        flagged_references=flagged,
    )


def _no_progress_s(beat: dict | None, last_verdict: float | None, now: float) -> float | None:
    """Seconds since the last verdict, or since the running process started if that is later."""
    since = max(last_verdict or 0.0, float((beat or {}).get("started") or 0.0))
    return round(max(0.0, now - since), 1) if since else None


def _alive(beat: dict | None, now: float) -> bool:
    if not beat or now - beat["time"] > ALIVE_AFTER_S:
        return False
    if beat.get("host") != socket.gethostname():
        return True  # cannot check another host's process; trust the recent heartbeat
    try:
        os.kill(beat["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def render(s: StatusSummary) -> str:
    state = "running" if s["running"] else "not running"
    if s["last_write_s_ago"] is not None:
        state += f" (last write {s['last_write_s_ago']:.0f} s ago)"
    share = s["samples"] / s["target"] if s["target"] else 0.0
    eta = (
        "-"
        if s["eta_s"] is None
        else time.strftime("%H:%M:%S", time.gmtime(s["eta_s"]))
        if s["eta_s"] < 86400
        else f"{s['eta_s'] / 86400:.1f} days"
    )
    if s["running"] and s["servers"] is not None:
        state += f"; servers up {s['servers_up']} of {s['servers']}"
    if s["running"] and s["remaining"] and (s["no_progress_s"] or 0) >= STALL_AFTER_S:
        state += f"; no progress for {s['no_progress_s']:.0f} s"
    lines = [
        f"{s['out']}: model {s['model']}, {state}",
        f"  verified {s['samples']:,} of {s['target']:,} ({share:.1%}); {s['remaining']:,} remaining;"
        f" generated {s['generated']:,}; generation failures {s['generation_failures']:,}",
        "  verdicts: " + ", ".join(f"{v} {n:,}" for v, n in s["verdicts"].items()),
        f"  rate {s['rate_per_s']:,.1f} samples/s over the last {RATE_WINDOW_S:.0f} s; ETA {eta}",
    ]
    if s["pass_at_k"]:
        lines.append("  " + "  ".join(f"pass@{k} {v:.4f}" for k, v in s["pass_at_k"].items()))
    if s["tests"]:
        lines.append(_tests_line(s["tests"]))
    if s["flagged_references"]:
        lines.append("  " + flagged_line(s["flagged_references"]))
    return "\n".join(lines)


def _tests_line(tests: dict[str, float | int]) -> str:
    line = (
        f"  tests passed: mean fraction {tests['mean_fraction_passed']:.4f} over {tests['samples']:,} samples"
    )
    if tests["base_judged"]:
        line += f"; base suite passed by {tests['base_passed']:,} of {tests['base_judged']:,}"
    return line
