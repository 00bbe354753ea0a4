#!/usr/bin/env python3
"""Writes deploy/grafana/dashboards/engine.json, the "engine: sweep" dashboard.

Run as: python deploy/grafana/dashboard.py   (tests/e2e/test_deploy.py checks the JSON is up to date)

Rows, top to bottom: progress (done/target, ETA, samples/s, problems solved, state), health
(errors by class, time since the last verdict, servers up, sandbox jails), running pass@k, verdicts, queue and
lag, throughput, the vLLM servers of the chosen sweeps only, dedup. Importable into any Grafana
and provisioned from files alike: the datasource is a `datasource` variable (file provisioning
does not resolve `__inputs`), the sweep a `run` variable over engine_run_info's run_id. Stat
panels read the last value in the time range, so a sweep's final figures stay after it ends.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "engine.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RUN = 'run_id=~"$run"'
RATE = "$__rate_interval"
LAST = "$__range"  # stat panels: the last value in the range, also once the engine is gone
# The sweep's servers: vLLM series kept only where the engine of a chosen run lists that server.
ITS_SERVERS = f"and on (server) engine_server_up{{{RUN}}}"


def q(expr: str, legend: str = "") -> dict:
    return {"expr": expr, "legendFormat": legend}


def panel(
    title: str,
    targets: list[dict],
    w: int = 12,
    h: int = 8,
    kind: str = "timeseries",
    unit: str = "short",
    description: str = "",
) -> dict:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{**t, "refId": chr(ord("A") + i), "datasource": DS} for i, t in enumerate(targets)],
        "gridPos": {"w": w, "h": h},
    }


def stat(title: str, targets: list[dict], w: int = 4, unit: str = "short", description: str = "") -> dict:
    p = panel(title, targets, w=w, h=5, kind="stat", unit=unit, description=description)
    p["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "none",
        "textMode": "value_and_name",
    }
    return p


def last(metric: str) -> str:
    return f"last_over_time({metric}{{{RUN}}}[{LAST}])"


ROWS: list[tuple[str, list[dict]]] = [
    (
        "Progress",
        [
            stat(
                "Verified / target",
                [
                    q(f"sum by (run_id) ({last('engine_sweep_verified_samples')})", "verified"),
                    q(f"sum by (run_id) ({last('engine_sweep_target_samples')})", "target"),
                ],
                w=5,
            ),
            stat(
                "Done",
                [
                    q(
                        f"{last('engine_sweep_verified_samples')} / on (run_id, instance) "
                        f"{last('engine_sweep_target_samples')}",
                        "{{run_id}}",
                    )
                ],
                unit="percentunit",
            ),
            # deriv fits the samples present: right for a sweep younger than the window, where rate()
            # would divide by the whole window; the gauge also carries across resumes.
            stat(
                "ETA",
                [
                    q(
                        f"engine_sweep_remaining_samples{{{RUN}}} / "
                        f"deriv(engine_sweep_verified_samples{{{RUN}}}[5m])",
                        "{{run_id}}",
                    )
                ],
                unit="s",
                description="Samples still to verify over the verdict rate of the last 5 minutes",
            ),
            stat(
                "Samples verified/s",
                [q(f"sum by (run_id) (rate(engine_samples_verified_total{{{RUN}}}[{RATE}]))", "{{run_id}}")],
            ),
            stat(
                "Problems solved",
                [
                    q(f"sum by (run_id) ({last('engine_sweep_problems_solved')})", "solved"),
                    q(f"sum by (run_id) ({last('engine_sweep_problems')})", "problems"),
                ],
            ),
            stat(
                "State",
                [q(f"{last('engine_sweep_state')} == 1", "{{state}}")],
                w=3,
                description="running, draining (stop asked), finished or stopped; the last state reported",
            ),
        ],
    ),
    (
        "Health",
        [
            panel(
                "Errors by class per second",
                [
                    q(
                        f"sum by (server) (rate(engine_generation_errors_total{{{RUN}}}[{RATE}]))",
                        "generation {{server}}",
                    ),
                    q(f"clamp_min(deriv(engine_sweep_infra_errors{{{RUN}}}[{RATE}]), 0)", "infrastructure"),
                ],
                w=10,
            ),
            stat(
                "Since the last verdict",
                [q(f"time() - engine_sweep_last_progress_timestamp_seconds{{{RUN}}}", "{{run_id}}")],
                w=4,
                unit="s",
            ),
            stat(
                "Servers up",
                [
                    q(f"sum(engine_server_up{{{RUN}}})", "up"),
                    q(f"count(engine_server_up{{{RUN}}})", "listed"),
                ],
                w=5,
            ),
            stat(
                "Failed for good",
                [
                    q(f"sum({last('engine_sweep_generation_failures')})", "generation"),
                    q(f"sum({last('engine_sweep_infra_errors')})", "infrastructure"),
                ],
                w=5,
                description="Samples the next run of the same command retries",
            ),
            panel(
                "Sandbox jails",
                [q(f"sum by (state) (engine_sandbox_jails{{{RUN}}})", "{{state}}")],
                w=24,
                h=6,
                description="busy, idle, restarting (a worker being replaced), broken (could not be restarted: "
                "its samples end as infra_error until the next run)",
            ),
        ],
    ),
    (
        "pass@k and verdicts",
        [
            panel("Running pass@k", [q(f"engine_pass_at_k{{{RUN}}}", "pass@{{k}}")], unit="percentunit"),
            panel(
                "Verdicts per second by kind",
                [
                    q(
                        f"sum by (verdict) (rate(engine_samples_verified_total{{{RUN}}}[{RATE}]))",
                        "{{verdict}}",
                    )
                ],
            ),
        ],
    ),
    (
        "Queue and lag",
        [
            panel(
                "Queue",
                [
                    q(f"engine_queue_depth{{{RUN}}}", "waiting for a sandbox"),
                    q(f"engine_queue_held{{{RUN}}}", "held (admitted, no verdict yet)"),
                    q(f"engine_queue_capacity{{{RUN}}}", "capacity"),
                ],
                w=8,
            ),
            panel(
                "Generated vs verified per second",
                [
                    q(f"sum(rate(engine_samples_generated_total{{{RUN}}}[{RATE}]))", "generated"),
                    q(f"sum(rate(engine_samples_verified_total{{{RUN}}}[{RATE}]))", "verified"),
                ],
                w=8,
            ),
            panel(
                "Verification latency",
                [
                    q(
                        f"histogram_quantile({p}, sum by (le) (rate(engine_verify_seconds_bucket{{{RUN}}}[{RATE}])))",
                        f"p{n}",
                    )
                    for p, n in ((0.5, 50), (0.9, 90), (0.99, 99))
                ]
                + [
                    q(
                        f"sum(rate(engine_verify_seconds_sum{{{RUN}}}[{RATE}])) / "
                        f"sum(rate(engine_verify_seconds_count{{{RUN}}}[{RATE}]))",
                        "mean",
                    )
                ],
                w=8,
                unit="s",
            ),
        ],
    ),
    (
        "Throughput",
        [
            panel(
                "Generated tokens/s",
                [
                    q(f"sum(rate(engine_generated_tokens_total{{{RUN}}}[{RATE}]))", "total"),
                    q(
                        f"sum by (server) (rate(engine_generated_tokens_total{{{RUN}}}[{RATE}]))",
                        "{{server}}",
                    ),
                ],
            ),
            panel("In-flight requests per server", [q(f"engine_inflight_requests{{{RUN}}}", "{{server}}")]),
        ],
    ),
    (
        "vLLM servers of the sweep",
        [
            panel(
                "vLLM: requests running", [q(f"vllm:num_requests_running {ITS_SERVERS}", "{{server}}")], w=6
            ),
            panel(
                "vLLM: requests waiting", [q(f"vllm:num_requests_waiting {ITS_SERVERS}", "{{server}}")], w=6
            ),
            panel(
                "vLLM: generation tokens/s",
                [
                    q(
                        f"sum by (server) (rate(vllm:generation_tokens_total[{RATE}])) {ITS_SERVERS}",
                        "{{server}}",
                    )
                ],
                w=6,
            ),
            panel(
                "vLLM: KV-cache usage",
                [q(f"(vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc) {ITS_SERVERS}", "{{server}}")],
                w=6,
                unit="percentunit",
                description="vllm:gpu_cache_usage_perc is the name before vLLM 0.10",
            ),
        ],
    ),
    (
        "Dedup",
        [
            panel(
                "Verdicts reused from an identical sample",
                [
                    q(f"sum(rate(engine_verify_dedup_total{{{RUN}}}[{RATE}]))", "reused/s"),
                    q(
                        f"sum(rate(engine_verify_dedup_total{{{RUN}}}[{RATE}])) / "
                        f"sum(rate(engine_samples_verified_total{{{RUN}}}[{RATE}]))",
                        "share of verdicts",
                    ),
                ],
                w=24,
            ),
        ],
    ),
]


def layout(rows: list[tuple[str, list[dict]]]) -> list[dict]:
    """Grafana's flat panel list: a row header, then its panels left to right, wrapping at 24."""
    panels, y, ident = [], 0, 1
    for title, row in rows:
        panels.append(
            {
                "type": "row",
                "title": title,
                "id": ident,
                "collapsed": False,
                "panels": [],
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            }
        )
        ident, y, x, height = ident + 1, y + 1, 0, 0
        for p in row:
            if x + p["gridPos"]["w"] > 24:
                x, y, height = 0, y + height, 0
            p = {**p, "id": ident, "gridPos": {**p["gridPos"], "x": x, "y": y}}
            panels.append(p)
            ident, x, height = ident + 1, x + p["gridPos"]["w"], max(height, p["gridPos"]["h"])
        y += height
    return panels


def dashboard() -> dict:
    variables = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        },
        {
            "name": "run",
            "label": "Sweep (run_id)",
            "type": "query",
            "datasource": DS,
            "query": {"query": "label_values(engine_run_info, run_id)", "refId": "run"},
            "definition": "label_values(engine_run_info, run_id)",
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {},
            "hide": 0,
            "sort": 0,
            "options": [],
        },
    ]
    return {
        "uid": "engine-sweep",
        "title": "engine: sweep",
        "description": "Progress, health, running pass@k and verdicts of engine sweeps, and their vLLM servers.",
        "tags": ["engine", "vllm"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 2,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": variables},
        "links": [],
        "panels": layout(ROWS),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
