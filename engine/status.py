"""`engine status`: where a run stands, also while another process is running it."""

from __future__ import annotations

import os
import socket
import time

from engine.store import Store
from engine.summary import VERDICT_ORDER
from metrics.passk import ks_for, mean_pass_at_k

RATE_WINDOW_S = 60.0
ALIVE_AFTER_S = 10.0  # a heartbeat older than this means nobody is running the sweep


def run_status(run_dir: str, now: float | None = None) -> dict:
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
    finally:
        store.close()
    wanted = target.get("problems", 0) * target.get("samples", 0)
    remaining = max(0, wanted - totals["verified"])
    ns = [n for n, _ in counts.values()]
    cs = [c for _, c in counts.values()]
    pass_at_k = {}
    for k in ks_for(max(ns)) if ns else []:
        score = mean_pass_at_k(ns, cs, k)
        if score is not None:
            pass_at_k[str(k)] = round(score, 6)
    return {
        "out": run_dir,
        "model": sampling.get("model"),
        "running": _alive(beat, now),
        "last_write_s_ago": None if beat is None else round(now - beat["time"], 1),
        "target": wanted,
        "samples": totals["verified"],
        "generated": totals["samples"],
        "remaining": remaining,
        "generation_failures": totals["generation_failures"],
        "tokens": totals["tokens"],
        "verdicts": {v: verdicts.get(v, 0) for v in VERDICT_ORDER},
        "rate_per_s": round(rate, 3),
        "eta_s": round(remaining / rate) if rate > 0 and remaining else (0 if not remaining else None),
        "pass_at_k": pass_at_k,
    }


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


def render(s: dict) -> str:
    state = "running" if s["running"] else "not running"
    if s["last_write_s_ago"] is not None:
        state += f" (last write {s['last_write_s_ago']:.0f} s ago)"
    share = s["samples"] / s["target"] if s["target"] else 0.0
    eta = "-" if s["eta_s"] is None else time.strftime("%H:%M:%S", time.gmtime(s["eta_s"])) if s["eta_s"] < 86400 \
        else f"{s['eta_s'] / 86400:.1f} days"
    lines = [
        f"{s['out']}: model {s['model']}, {state}",
        f"  verified {s['samples']:,} of {s['target']:,} ({share:.1%}); {s['remaining']:,} remaining;"
        f" generated {s['generated']:,}; generation failures {s['generation_failures']:,}",
        "  verdicts: " + ", ".join(f"{v} {n:,}" for v, n in s["verdicts"].items()),
        f"  rate {s['rate_per_s']:,.1f} samples/s over the last {RATE_WINDOW_S:.0f} s; ETA {eta}",
    ]
    if s["pass_at_k"]:
        lines.append("  " + "  ".join(f"pass@{k} {v:.4f}" for k, v in s["pass_at_k"].items()))
    return "\n".join(lines)
