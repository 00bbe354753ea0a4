"""A real Prometheus (Debian's) scrapes two `engine run` processes and a simulated fleet with
faults: every dashboard query is evaluated through its HTTP API and checked against the store and
the engine's own summary, and the simulator's faults drive the alert rules (a test copy with
second-long windows, evaluated every second).

One sweep (A) runs to its end through a server outage, a whole-fleet outage and a verification
bottleneck; another (B) is killed with SIGKILL while running; C sweeps changed prompts (pass@1
stays 0); D's sandbox breaks for real mid-sweep (infra errors). Bounded: a few minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import yaml
from fleet_process import ENGINE, simulated_fleet

from engine.fleet.hosts import parse_hosts
from engine.tasks import load_problems

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "engine.json"
LIMIT, SAMPLES = 16, 40
# Seconds after the simulator starts: server1 dies for 6 s, then the whole fleet for 10 s.
FAULTS = "kill=server1@5s+6s,fleet_down=@14s+10s"
RATE_INTERVAL, RANGE = "4s", "15m"  # what Grafana would put for $__rate_interval and $__range


def free_port() -> int:
    """A free port below the ephemeral range, so no outgoing connection (Prometheus scraping, the
    engine's streams) takes it before the engine binds it."""
    for port in random.sample(range(20000, 32000), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 20000-32000")


def fast_rules(text: str) -> str:
    """The shipped rules with minutes turned into seconds: `for: 5m` -> 1s, `[10m]` -> [3s]."""
    text = re.sub(r"for: \d+m", "for: 1s", text)
    return re.sub(r"\[\d+m\]", "[3s]", text)


class Prometheus:
    def __init__(self, workdir: Path, engine_port: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
        for job in config["scrape_configs"]:
            job["file_sd_configs"][0]["refresh_interval"] = "1s"
        (workdir / "rules").mkdir(parents=True)
        for rules in (DEPLOY / "prometheus/rules").glob("*.yml"):
            (workdir / "rules" / rules.name).write_text(fast_rules(rules.read_text()))
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        (workdir / "targets").mkdir()
        (workdir / "targets/engine.json").write_text(json.dumps([{"targets": [f"127.0.0.1:{engine_port}"]}]))
        self.log = (workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                shutil.which("prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--storage.tsdb.path={workdir / 'data'}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not self._ready():
            assert self.process.poll() is None and time.monotonic() < deadline, "Prometheus did not start"
            time.sleep(0.2)

    def scrape(self, hosts: Path, engine_port: int) -> None:
        """Targets as the README says: hosts_to_targets.py writes the fleet's and the engine's."""
        result = subprocess.run(
            [
                sys.executable,
                str(DEPLOY / "prometheus/hosts_to_targets.py"),
                str(hosts),
                "-o",
                str(self.workdir / "targets/vllm.json"),
                "--engine",
                f"127.0.0.1:{engine_port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def api(self, path: str, **params) -> object:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            pytest.fail(f"{params}: {exc.read().decode()}")
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        return self.api("query", query=expr, **({"time": at} if at is not None else {}))["result"]

    def value(self, expr: str, at: float | None = None) -> float | None:
        result = self.query(expr, at)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def fired(self, alert: str, start: float, end: float) -> list[dict]:
        """Label sets of `alert` seen firing between start and end."""
        data = self.api(
            "query_range",
            query=f'ALERTS{{alertname="{alert}", alertstate="firing"}}',
            start=start,
            end=end,
            step=1,
        )
        return [series["metric"] for series in data["result"]]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def engine_run(hosts: Path, out: Path, port: int, *extra: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *ENGINE,
            "run",
            "--servers",
            str(hosts),
            "--out",
            str(out),
            "--limit",
            str(LIMIT),
            "--samples",
            str(SAMPLES),
            "--metrics-port",
            str(port),
            "--json",
            "--request-n",
            "8",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def wait_for(predicate, timeout: float, what: str | Callable[[], str]):
    """`what` names what was awaited; a callable says it at the timeout (with what was seen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what() if callable(what) else what}")


def dashboard_queries(run_id: str) -> list[tuple[str, str, str]]:
    """(panel title, legend, PromQL) of every dashboard query, variables filled in as Grafana would."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = (
                target["expr"]
                .replace("$__rate_interval", RATE_INTERVAL)
                .replace("$__range", RANGE)
                .replace("$run", run_id)
            )
            out.append((panel["title"], target.get("legendFormat", ""), expr))
    return out


def store_facts(out: Path) -> dict:
    db = sqlite3.connect(out / "results.sqlite")
    try:
        run_id = json.loads(db.execute("SELECT value FROM meta WHERE key = 'run_id'").fetchone()[0])
        solved = db.execute(
            "SELECT COUNT(DISTINCT task_id) FROM samples WHERE verdict = 'passed'"
        ).fetchone()[0]
        verified = db.execute("SELECT COUNT(verdict) FROM samples").fetchone()[0]
    finally:
        db.close()
    return {"run_id": run_id, "solved": solved, "verified": verified}


@pytest.mark.timeout(240)
def test_real_prometheus_scrapes_a_faulty_sweep_and_every_dashboard_query_agrees(tmp_path):
    assert shutil.which("prometheus"), "prometheus is not installed: `make test` installs it"
    port_a, port_b = free_port(), free_port()
    for fleet in ("fleet-a", "fleet-b"):
        (tmp_path / fleet).mkdir()
    prometheus = Prometheus(tmp_path / "prometheus", port_b)
    try:
        # B: scraped while running, then killed without a chance to say so.
        with simulated_fleet(tmp_path / "fleet-b", 1, 2000) as hosts:
            b = engine_run(hosts, tmp_path / "run-b", port_b, "--workers", "1")
            wait_for(
                lambda: prometheus.value(
                    f'count_over_time(engine_sweep_state{{state="running",'
                    f'instance="127.0.0.1:{port_b}"}}[1m]) >= 2'
                ),
                60,
                "B scraped",
            )
            b.send_signal(signal.SIGKILL)
            b.communicate(timeout=30)
        # A: through the faults to the end; one sandbox and a small queue make verification lag.
        with simulated_fleet(tmp_path / "fleet-a", 3, 2000, "--faults", FAULTS) as hosts:
            started = time.time()
            prometheus.scrape(hosts, port_a)
            # 3 servers x 6 streams fill at most 18 of 30 slots: the rest hold samples waiting for a
            # verdict, and one sandbox without dedup cannot keep up.
            a = engine_run(
                hosts,
                tmp_path / "run-a",
                port_a,
                "--workers",
                "1",
                "--queue-size",
                "30",
                "--max-seqs-per-server",
                "6",
                "--request-n",
                "3",
                "--no-dedup",
            )
            stdout, stderr = a.communicate(timeout=180)
            ended = time.time()
            print(f"\nA took {ended - started:.1f} s")
            assert a.returncode == 0, stderr
            summary = orjson.loads(stdout)
            facts = store_facts(tmp_path / "run-a") | {"servers": parse_hosts(hosts.read_text())}
            run_b = store_facts(tmp_path / "run-b")["run_id"]
            assert facts["run_id"] != run_b
            wait_for(
                lambda: prometheus.fired("EngineGoneUnfinished", started - 60, time.time()), 30, "the alert"
            )
            time.sleep(2)  # the last rule evaluations
            check_dashboard(prometheus, facts, summary, started, ended)
            check_alerts(prometheus, facts["run_id"], run_b, facts["servers"][1], started - 60, time.time())
            check_a_misconfigured_harness_is_flagged(prometheus, hosts, tmp_path)
            check_a_broken_sandbox_is_flagged(prometheus, hosts, tmp_path)
    finally:
        prometheus.stop()


def check_dashboard(prometheus: Prometheus, facts: dict, summary: dict, started: float, ended: float) -> None:
    run_id = facts["run_id"]
    # Evaluate where the final scrape left every series live: the engine's exit made them stale.
    (live,) = prometheus.api(
        "query_range",
        query=f'engine_sweep_verified_samples{{run_id="{run_id}"}}',
        start=started,
        end=ended + 5,
        step=0.5,
    )["result"]
    final = float(live["values"][-1][0])
    assert float(live["values"][-1][1]) == summary["samples"]  # the final scrape saw the end
    values: dict[tuple[str, str], list] = {}
    for title, legend, expr in dashboard_queries(run_id):
        values[(title, legend)] = prometheus.query(expr, at=final)
    empty = [key for key, result in values.items() if not result]
    assert not empty, f"queries with no data at the end of the sweep: {empty}"
    print("\ndashboard queries at the end of the sweep:")
    for (title, legend), result in values.items():
        shown = ", ".join(f"{_legend(legend, r['metric'])}={float(r['value'][1]):.6g}" for r in result)
        print(f"  {title} [{legend}]: {shown}")

    def one(title: str, legend: str) -> float:
        (result,) = values[(title, legend)]
        return float(result["value"][1])

    target = LIMIT * SAMPLES
    assert one("Verified / target", "verified") == facts["verified"] == summary["samples"] == target
    assert one("Verified / target", "target") == target
    assert one("Done", "{{run_id}}") == 1.0
    assert one("Problems solved", "solved") == facts["solved"]
    assert one("Problems solved", "problems") == LIMIT
    assert [r["metric"]["state"] for r in values[("State", "{{state}}")]] == ["finished"]
    pass_at_k = {r["metric"]["k"]: float(r["value"][1]) for r in values[("Running pass@k", "pass@{{k}}")]}
    assert pass_at_k.keys() == summary["pass_at_k"].keys()
    for k, score in summary["pass_at_k"].items():
        assert round(pass_at_k[k], 4) == round(score, 4), k
    verdicts = {
        r["metric"]["verdict"]: float(r["value"][1])
        for r in prometheus.query(f'engine_samples_verified_total{{run_id="{run_id}"}}', at=final)
    }
    assert verdicts == {v: float(n) for v, n in summary["verdicts"].items()}  # a fresh run: counters from 0
    tokens = prometheus.value(f'sum(engine_generated_tokens_total{{run_id="{run_id}"}})', at=final)
    assert tokens >= summary["tokens"] > 0  # streams cut by the outages were received, not stored
    assert one("Servers up", "listed") == 3
    assert one("Queue", "capacity") == 30
    vllm_servers = {r["metric"]["server"] for r in values[("vLLM: requests running", "{{server}}")]}
    assert vllm_servers <= set(facts["servers"])
    # Servers up dipped to 2 during server1's outage, to 0 during the fleet's, and ended at 3.
    ups = prometheus.api(
        "query_range", query=f'sum(engine_server_up{{run_id="{run_id}"}})', start=started, end=final, step=1
    )["result"][0]["values"]
    seen = [float(v) for _, v in ups]
    assert {2.0, 0.0, 3.0} <= set(seen) and seen[-1] == 3.0, seen
    # ETA three quarters through (after the outages): positive, and near what the rest took.
    at = started + 0.75 * (ended - started)
    (eta_expr,) = [expr for title, _, expr in dashboard_queries(run_id) if title == "ETA"]
    eta = prometheus.value(eta_expr, at=at)
    assert eta is not None and 0 < eta < 5 * (ended - at) + 30, (eta, ended - at)
    print(f"ETA at 75%: {eta:.1f} s; the rest took {ended - at:.1f} s")
    # After the engine is gone, the stat panels still show the final figures.
    for title, legend, expr in dashboard_queries(run_id):
        if title in ("Verified / target", "Problems solved", "State", "Done"):
            assert prometheus.query(expr), f"{title} [{legend}] went blank after the sweep"


def check_alerts(
    prometheus: Prometheus, run_a: str, run_b: str, server1: str, start: float, end: float
) -> None:
    def runs(alert: str) -> set[str]:
        return {m.get("run_id") for m in prometheus.fired(alert, start, end)}

    assert runs("EngineGoneUnfinished") == {run_b}  # A said it finished before it left
    down = prometheus.fired("EngineVllmServerDown", start, end)
    assert server1 in {m["server"] for m in down if m["run_id"] == run_a}
    assert run_a in runs("EngineSweepStalled")  # the whole fleet down: no verdicts for seconds
    assert run_a in runs("EngineVerificationBehind"), prometheus.query(  # one sandbox, no dedup, 30 slots
        f'max_over_time(engine_queue_held{{run_id="{run_a}"}}[{RANGE}])'
    )


def check_a_misconfigured_harness_is_flagged(prometheus: Prometheus, hosts: Path, tmp_path: Path) -> None:
    """C sweeps HumanEval problems whose prompts were changed: the simulated model does not know
    them, every sample fails, and pass@1 = 0 over hundreds of samples fires the alert."""
    dataset = tmp_path / "changed-prompts.jsonl"
    dataset.write_bytes(
        b"".join(
            orjson.dumps(
                {
                    "task_id": p.task_id,
                    "prompt": "# changed\n" + p.prompt,
                    "test": p.payload["test"],
                    "entry_point": p.payload["entry_point"],
                }
            )
            + b"\n"
            for p in load_problems(limit=5)
        )
    )
    port = free_port()
    prometheus.scrape(hosts, port)
    log_path = tmp_path / "run-c.log"  # a file, not a pipe: nothing read from C while it runs
    # 5 x 5,000 samples: more than C can finish while the alert is awaited. A finished C's series
    # go stale and the alert never fires (seen in CI: at 5 x 200, C had finished before it fired).
    with log_path.open("w") as log:
        c = engine_run(
            hosts,
            tmp_path / "run-c",
            port,
            "--dataset",
            str(dataset),
            "--samples",
            "5000",
            "--workers",
            "2",
            stderr=log,
        )

    def alert_while_c_runs():
        assert c.poll() is None, f"C ended (exit {c.returncode}): {log_path.read_text()[-3000:]}"
        return prometheus.fired("EnginePassAt1Suspicious", time.time() - 120, time.time())

    try:
        wait_for(lambda: (tmp_path / "run-c/results.sqlite").exists(), 60, "C's store")
        run_c = wait_for(lambda: _run_id(tmp_path / "run-c"), 60, "C's run_id")
        fired = wait_for(
            alert_while_c_runs,
            120,
            lambda: (
                f"the pass@1 alert (C verified {_verified(tmp_path / 'run-c')}; "
                f"its log ends: {log_path.read_text()[-1500:]})"
            ),
        )
        assert {m["run_id"] for m in fired} == {run_c}
    finally:
        c.send_signal(signal.SIGINT)  # stop admitting; a second signal stops at once
        time.sleep(0.5)
        c.send_signal(signal.SIGINT)
        c.communicate(timeout=120)


def check_a_broken_sandbox_is_flagged(prometheus: Prometheus, hosts: Path, tmp_path: Path) -> None:
    """D's sandbox really breaks mid-sweep: the files its jails are started from are removed (as a
    /tmp cleaner would) and its jails are killed from outside (as the OOM killer would). No jail
    can restart, so every sample from then on ends as infra_error: the infra-error alert fires for
    D only (A and C had none), and engine_sandbox_jails shows D's jails broken."""
    port = free_port()
    prometheus.scrape(hosts, port)
    log = (tmp_path / "run-d.log").open("w")  # a warning per retried sample: more than a pipe holds
    d = engine_run(hosts, tmp_path / "run-d", port, "--samples", "200", "--workers", "1", stderr=log)
    started = time.time()
    try:
        run_d = wait_for(lambda: _run_id(tmp_path / "run-d"), 60, "D's run_id")
        wait_for(lambda: _verified(tmp_path / "run-d") >= 20, 60, "D's first verdicts")
        jails = _sandbox_jails(d.pid)
        assert jails, "no sandbox jail under D"
        for staged in Path("/tmp").glob(f"engine-sandbox-{d.pid}-*"):
            shutil.rmtree(staged)
        for pid in jails:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        fired = wait_for(
            lambda: prometheus.fired("EngineInfraErrorRatioHigh", started - 5, time.time()),
            60,
            "the infra-error alert",
        )
        assert {m["run_id"] for m in fired} == {run_d}
        broken = f'sum(engine_sandbox_jails{{run_id="{run_d}", state="broken"}})'
        assert wait_for(lambda: prometheus.value(broken), 30, "broken jails") >= 1
    finally:
        d.send_signal(signal.SIGINT)
        time.sleep(0.5)
        d.send_signal(signal.SIGINT)
        d.communicate(timeout=120)
        log.close()
    print(f"D (broken sandbox) took {time.time() - started:.1f} s")
    earlier = prometheus.fired("EngineInfraErrorRatioHigh", started - 600, time.time())
    assert {m["run_id"] for m in earlier} == {run_d}  # A, B and C: never


def _sandbox_jails(engine_pid: int) -> list[int]:
    """The engine's sandbox workers: its children started as engine-sandbox-* jails."""
    children = []
    for task in Path(f"/proc/{engine_pid}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return [pid for pid in children if b"engine-sandbox-" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _verified(out: Path) -> int:
    try:
        return store_facts(out)["verified"]
    except (sqlite3.Error, TypeError):
        return 0


def _run_id(out: Path) -> str | None:
    try:
        return store_facts(out)["run_id"]
    except (sqlite3.Error, TypeError):  # not written yet
        return None


def _legend(legend: str, labels: dict) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), legend) or "value"
