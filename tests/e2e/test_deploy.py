"""deploy/: the dashboard queries only series that exist, the configs agree with each other, and
the launch scripts do what their headers say (run against fake vllm/srun/kubectl executables)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

import pytest
import transcripts
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.cli import main as engine_cli
from engine.fleet.hosts import parse_hosts
from metrics.exporter import EngineMetrics
from metrics.running import RunningPassAtK
from metrics.sweep_state import SweepState, SweepStateCollector
from vllm_sim.api.server_metrics import ServerMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "engine.json"
HOSTS_TO_TARGETS = DEPLOY / "prometheus" / "hosts_to_targets.py"
SCRIPTS = sorted([*DEPLOY.rglob("*.sh"), *DEPLOY.rglob("*.sbatch")])
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])

# Labels Prometheus itself attaches: job and instance to every target, and hosts_to_targets.py
# gives every vLLM target server="<base URL>".
ENGINE_TARGET_LABELS = {"job", "instance"}
VLLM_TARGET_LABELS = {"job", "instance", "server"}


# --- which series exist ------------------------------------------------------------------------


def _series(exposition: str) -> dict[str, set[str]]:
    """{sample name: label names} of a Prometheus text exposition."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def engine_series() -> dict[str, set[str]]:
    """A fresh EngineMetrics registry, every labelled metric touched once so it has a sample."""
    running = RunningPassAtK()
    registry = CollectorRegistry()
    m = EngineMetrics(registry, running)
    server = "http://10.0.0.5:8000"
    m.generated_tokens.labels(server).inc(7)
    m.inflight_requests.labels(server).inc()
    m.server_up.labels(server).set(1)
    m.generation_errors.labels(server).inc()
    m.verify_seconds.observe(0.2)
    running.add("HumanEval/0", True)
    info = {"run_id": "r", "model": "m", "dataset": "d", "task": "humaneval", "sampling_hash": "h"}
    registry.register(
        SweepStateCollector(
            SweepState(
                run_id="r",
                info=info,
                problems=["HumanEval/0"],
                samples=1,
                running=running,
                store_path=Path("/nonexistent"),
            )
        )
    )
    # every served engine series carries run_id (metrics/http.py adds it)
    return {
        name: labels | ENGINE_TARGET_LABELS | {"run_id"}
        for name, labels in _series(generate_latest(registry).decode()).items()
    }


def vllm_series() -> dict[str, set[str]]:
    """vllm:* series exported both by real vLLM (the captured transcript) and by the simulator,
    so the dashboard works on a real fleet and in the demo."""
    real = _series(transcripts.load("60_metrics_vllm_only").body.decode())
    simulated = _series(ServerMetrics("m", lambda: 1, lambda: 0, lambda: 0.5).exposition().decode())
    return {
        name: real[name] | simulated[name] | VLLM_TARGET_LABELS for name in real.keys() & simulated.keys()
    }


# Names of older vLLM releases the dashboard falls back to (`a or b`).
OLDER_VLLM = {"vllm:gpu_cache_usage_perc": VLLM_TARGET_LABELS | {"model_name"}}
KNOWN = {**engine_series(), **vllm_series(), **OLDER_VLLM}


# --- reading PromQL ----------------------------------------------------------------------------

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.:])[A-Za-z_:][\w:]*")


def promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, label
    names (in matchers or grouping clauses), strings or durations."""
    expr = _STRING.sub('""', expr)
    expr = _MATCHERS.sub("", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = _GROUPING.sub("", expr)
    names = set()
    for m in _IDENT.finditer(expr):
        is_call = expr[m.end() :].lstrip().startswith("(")
        if not is_call and m.group() not in _KEYWORDS:
            names.add(m.group())
    return names


def promql_labels(expr: str, legend: str = "") -> set[str]:
    """Label names an expression groups or matches by, and those its legend shows."""
    expr = _STRING.sub('""', expr)
    labels = set()
    for group in _GROUPING.findall(expr):
        labels.update(x.strip() for x in group.split(",") if x.strip())
    for matchers in _MATCHERS.findall(expr):
        labels.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    labels.update(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    return labels


def test_promql_reader_finds_names_and_labels():
    expr = 'histogram_quantile(0.99, sum by (le) (rate(engine_verify_seconds_bucket{job="engine"}[1m])))'
    assert promql_metrics(expr) == {"engine_verify_seconds_bucket"}
    assert promql_labels(expr, "p99 {{ le }}") == {"le", "job"}
    expr = "sum(rate(vllm:generation_tokens_total[5m] offset 1h)) by (server) / on(server) group_left count(up) > 1e3"
    assert promql_metrics(expr) == {"vllm:generation_tokens_total", "up"}
    assert promql_metrics('engine_pass_at_k{k="10"} and bool engine_bogus_total') == {
        "engine_pass_at_k",
        "engine_bogus_total",
    }


def test_known_series_include_histogram_buckets_and_vllm_names():
    assert {
        "engine_verify_seconds_bucket",
        "engine_verify_seconds_count",
        "engine_generated_tokens_total",
        "engine_pass_at_k",
    } <= KNOWN.keys()
    assert (
        "server" in KNOWN["engine_generated_tokens_total"] and "le" in KNOWN["engine_verify_seconds_bucket"]
    )
    assert {
        "vllm:num_requests_running",
        "vllm:generation_tokens_total",
        "vllm:kv_cache_usage_perc",
    } <= KNOWN.keys()


# --- the dashboard -----------------------------------------------------------------------------


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def targets():
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def test_dashboard_json_is_what_its_generator_writes():
    sys.path.insert(0, str(DEPLOY / "grafana"))
    try:
        import dashboard as generator
    finally:
        sys.path.pop(0)
    assert DASHBOARD.read_text() == generator.render(), "run python deploy/grafana/dashboard.py"


def test_dashboard_imports_anywhere_and_is_provisioned_from_files():
    """No hard-wired datasource uid and no __inputs (file provisioning does not resolve them): a
    datasource variable; a run variable over run_id; rows of panels on a 24-wide grid."""
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert "__inputs" not in board
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert "engine_run_info" in variables["run"]["definition"] and "run_id" in variables["run"]["definition"]
    panels = board["panels"]
    assert board["uid"] and board["title"] and panels
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    assert [p["title"] for p in panels if p["type"] == "row"][:2] == ["Progress", "Health"]
    for panel in panels:
        assert panel.get("title", "").strip(), f"panel {panel['id']} has no title"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']}: no queries"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_engine_query_is_limited_to_the_chosen_runs_and_rates_use_the_rate_interval():
    for panel, target in targets():
        expr = target["expr"]
        if any(n.startswith("engine_") for n in promql_metrics(expr)):
            assert 'run_id=~"$run"' in expr, f"{panel['title']}: {expr}"
        for window in re.findall(r"\b(?:rate|deriv)\([^\[]*\[([^\]]*)\]", expr):
            assert window == "$__rate_interval" or panel["title"] == "ETA", f"{panel['title']}: {expr}"


def test_every_query_uses_only_existing_series_and_labels():
    for panel, target in targets():
        names = promql_metrics(target["expr"])
        assert names, f"{panel['title']}: no metric in {target['expr']!r}"
        unknown = names - KNOWN.keys()
        assert not unknown, f"{panel['title']}: {sorted(unknown)} exported neither by the engine nor by vLLM"
        available = set().union(*(KNOWN[n] for n in names))
        missing = promql_labels(target["expr"], target.get("legendFormat", "")) - available
        assert not missing, f"{panel['title']}: labels {sorted(missing)} are not on {sorted(names)}"


def test_dashboard_shows_every_contract_metric_and_the_vllm_side():
    used = set().union(*(promql_metrics(t["expr"]) for _, t in targets()))
    contract = {
        "engine_generated_tokens_total",
        "engine_samples_generated_total",
        "engine_samples_verified_total",
        "engine_pass_at_k",
        "engine_queue_depth",
        "engine_inflight_requests",
        "engine_server_up",
        "engine_verify_seconds_bucket",
    }
    vllm = {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:generation_tokens_total",
        "vllm:kv_cache_usage_perc",
    }
    assert contract | vllm <= used, sorted((contract | vllm) - used)


# --- hosts.txt -> Prometheus file_sd -----------------------------------------------------------


def run_hosts_to_targets(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HOSTS_TO_TARGETS), *args], capture_output=True, text=True, timeout=60
    )


def test_hosts_to_targets_writes_file_sd_json(tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(
        "# fleet\n\nhttp://10.0.0.5:8000\nhttps://gw.example/gpu3/v1   # behind a proxy\n"
        "http://[fd00::7]:8001/\n"
    )
    out = tmp_path / "targets" / "vllm.json"
    result = run_hosts_to_targets(str(hosts), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == [
        {
            "targets": ["10.0.0.5:8000"],
            "labels": {
                "server": "http://10.0.0.5:8000",
                "__scheme__": "http",
                "__metrics_path__": "/metrics",
            },
        },
        {
            "targets": ["gw.example:443"],
            "labels": {
                "server": "https://gw.example/gpu3",
                "__scheme__": "https",
                "__metrics_path__": "/gpu3/metrics",
            },
        },
        {
            "targets": ["[fd00::7]:8001"],
            "labels": {
                "server": "http://[fd00::7]:8001",
                "__scheme__": "http",
                "__metrics_path__": "/metrics",
            },
        },
    ]
    assert [g["labels"]["server"] for g in json.loads(out.read_text())] == parse_hosts(hosts.read_text())
    assert json.loads(run_hosts_to_targets(str(hosts)).stdout) == json.loads(out.read_text())  # stdout form


@pytest.mark.parametrize(
    "text, message",
    [
        ("http://10.0.0.5:8000\n10.0.0.6:8000\n", r"hosts.txt:2: '10.0.0.6:8000' is not a base URL"),
        ("http://a:1\nhttp://a:1/\n", "listed twice"),
        ("# nothing\n", "no servers"),
    ],
)
def test_hosts_to_targets_rejects_bad_hosts_in_one_line(tmp_path, text, message):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(text)
    out = tmp_path / "vllm.json"
    result = run_hosts_to_targets(str(hosts), "-o", str(out))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and re.search(message, result.stderr), result.stderr
    assert not out.exists()


def test_hosts_to_targets_missing_file(tmp_path):
    result = run_hosts_to_targets(str(tmp_path / "nope.txt"))
    assert (
        result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "does not exist" in result.stderr
    )


# --- configuration files agree with each other -------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path):
    assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_prometheus_scrapes_the_engine_and_the_generated_targets(tmp_path):
    """The engine's target is generated like the fleet's, from `engine run`'s defaults or --engine,
    so the config follows --metrics-port; the two jobs read different files."""
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    engine_files = jobs["engine"]["file_sd_configs"][0]["files"]
    vllm_files = jobs["vllm"]["file_sd_configs"][0]["files"]
    assert any(fnmatch("targets/engine.json", p) for p in engine_files)
    assert not any(fnmatch("targets/engine.json", p) for p in vllm_files)
    assert any(fnmatch("targets/vllm.json", p) for p in vllm_files)  # where the README writes them
    assert jobs["engine"].get("metrics_path", "/metrics") == "/metrics"
    run_options = {param.name: param.default for param in engine_cli.commands["run"].params}
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("http://10.0.0.5:8000\n")
    assert run_hosts_to_targets(str(hosts), "-o", str(tmp_path / "vllm.json")).returncode == 0
    assert json.loads((tmp_path / "engine.json").read_text()) == [
        {"targets": [f"{run_options['metrics_host']}:{run_options['metrics_port']}"], "labels": {}}
    ]
    result = run_hosts_to_targets(str(hosts), "-o", str(tmp_path / "vllm.json"), "--engine", "127.0.0.1:9555")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "engine.json").read_text())[0]["targets"] == ["127.0.0.1:9555"]


@pytest.mark.parametrize("address", ["9400", "host:", "host:port", "host:70000", ":9400"])
def test_hosts_to_targets_rejects_a_bad_engine_address(tmp_path, address):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("http://10.0.0.5:8000\n")
    result = run_hosts_to_targets(str(hosts), "-o", str(tmp_path / "vllm.json"), "--engine", address)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "HOST:PORT" in result.stderr
    assert not (tmp_path / "engine.json").exists() and not (tmp_path / "vllm.json").exists()


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, (
        f"{name} is not installed: `make test` installs it (scripts/setup-test-system.sh)"
    )
    return path


def test_prometheus_config_and_rules_pass_promtool():
    for check in (
        ["check", "config", str(DEPLOY / "prometheus/prometheus.yml")],
        ["check", "rules", *map(str, sorted((DEPLOY / "prometheus/rules").glob("*.yml")))],
    ):
        result = subprocess.run([_tool("promtool"), *check], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests():
    tests = sorted((DEPLOY / "prometheus/rules/tests").glob("*.yml"))
    assert tests
    result = subprocess.run(
        [_tool("promtool"), "test", "rules", *map(str, tests)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_the_issue_asks_for_exists_and_has_a_unit_test_that_fires_it():
    rules = yaml.safe_load((DEPLOY / "prometheus/rules/engine.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {
        "EngineSweepStalled",
        "EngineVllmServerDown",
        "EngineVerificationBehind",
        "EngineGoneUnfinished",
        "EngineInfraErrorRatioHigh",
        "EnginePassAt1Suspicious",
    }
    fired = set()
    for path in (DEPLOY / "prometheus/rules/tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            fired |= {t["alertname"] for t in case.get("alert_rule_test", []) if t["exp_alerts"]}
    assert alerts <= fired, f"never seen firing in a unit test: {sorted(alerts - fired)}"


def test_compose_mounts_exist_and_grafana_finds_the_dashboards():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"compose mounts missing {source}"
    grafana = compose["services"]["grafana"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/engine.yaml").read_text())[
        "providers"
    ][0]
    variable = re.fullmatch(r"\$\{(\w+)\}", provider["options"]["path"]).group(1)
    dashboards_dir = grafana["environment"][variable]
    assert (DEPLOY / mounted[dashboards_dir]).resolve() == DASHBOARD.parent


def test_kubernetes_manifest_is_consistent():
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all((DEPLOY / "vllm/k8s/vllm.yaml").read_text())}
    service, sts = docs["Service"], docs["StatefulSet"]
    assert (
        service["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == service["metadata"]["name"]
    )
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"] if a.startswith("--"))
    assert {"seed", "max-num-seqs"} <= args.keys() and args["host"] == "0.0.0.0"
    (port,) = container["ports"]
    assert int(args["port"]) == port["containerPort"] == service["spec"]["ports"][0]["port"]
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    # hosts-from-k8s.sh's defaults name this manifest's pods.
    script = (DEPLOY / "vllm/k8s/hosts-from-k8s.sh").read_text()
    default = dict(re.findall(r"^(\w+)=\$\{\1:-([^}]*)\}", script, re.M))
    assert default["SERVICE"] == service["metadata"]["name"]
    assert default["PORT"] == str(port["containerPort"])
    key, value = default["SELECTOR"].split("=")
    assert labels[key] == value


# --- shell scripts -----------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_syntax(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(script, os.X_OK), f"{script.name} is not executable"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
    result = subprocess.run([_tool("shellcheck"), "-s", "bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


FAKE_VLLM = '''#!{python}
"""Stands in for `vllm serve`: records its arguments and GPU, answers /health on --port."""
import http.server, json, os, sys
argv = sys.argv[1:]
port = int(argv[argv.index("--port") + 1])
with open(os.environ["FAKE_VLLM_RECORD"], "a") as f:
    f.write(json.dumps({{"argv": argv, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}}) + "\\n")
if os.environ.get("CUDA_VISIBLE_DEVICES") == os.environ.get("FAKE_VLLM_BROKEN_GPU"):
    sys.exit("CUDA out of memory")
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
'''


def _free_port_run(count: int) -> int:
    """A base port such that base .. base+count-1 are free right now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            socks = []
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def fake_bin(tmp_path):
    """A directory of fake executables (vllm, srun, kubectl) and the environment to use them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vllm").write_text(FAKE_VLLM.format(python=sys.executable))
    (bin_dir / "srun").write_text(
        "#!/bin/sh\n# one task, here\nwhile [ $# -gt 0 ]; do case $1 in -*) shift;; "
        '*) break;; esac; done\nexec "$@"\n'
    )
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_VLLM_RECORD": str(tmp_path / "vllm-calls.jsonl"),
    }
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return bin_dir, env


def _start(cmd, env, cwd):
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _stop(proc) -> str:
    """SIGTERM the script (it stops its servers); the process group only if it does not end."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"did not stop on SIGTERM:\n{out}")
    return out


def test_serve_gpus_starts_one_server_per_gpu_and_lists_the_healthy_ones(fake_bin, tmp_path):
    _, env = fake_bin
    base = _free_port_run(3)
    hosts = tmp_path / "fleet" / "hosts.txt"
    env.update(
        GPUS="0,1,2",
        BASE_PORT=str(base),
        ADVERTISE="gpu-node-7",
        HOSTS_FILE=str(hosts),
        LOG_DIR=str(tmp_path / "logs"),
        SEED="1234",
        MAX_NUM_SEQS="128",
        FAKE_VLLM_BROKEN_GPU="1",
    )
    proc = _start(
        [str(DEPLOY / "vllm/serve-gpus.sh"), "org/model-8b", "--max-model-len", "4096"], env, tmp_path
    )
    try:
        assert _wait_for(lambda: hosts.exists() and "servers healthy" in hosts.read_text()), (
            "start-up never ended"
        )
        assert _listening(base) and _listening(base + 2)
    finally:
        out = _stop(proc)
    # In the order they became healthy; the start-up summary comes last.
    assert sorted(parse_hosts(hosts.read_text())) == [
        f"http://gpu-node-7:{base}",
        f"http://gpu-node-7:{base + 2}",
    ]
    assert hosts.read_text().splitlines()[-1] == "# gpu-node-7: 2/3 vLLM servers healthy"
    assert "CUDA out of memory" in out  # the failed server's log is shown
    calls = sorted(
        (json.loads(line) for line in (tmp_path / "vllm-calls.jsonl").read_text().splitlines()),
        key=lambda c: c["gpu"],
    )
    assert [c["gpu"] for c in calls] == ["0", "1", "2"]
    for i, call in enumerate(calls):
        argv = call["argv"]
        assert argv[:2] == ["serve", "org/model-8b"] and argv[-2:] == ["--max-model-len", "4096"]
        flags = dict(zip(argv[2:-2:2], argv[3:-2:2]))
        assert flags["--port"] == str(base + i) and flags["--host"] == "0.0.0.0"
        assert flags["--seed"] == "1234" and flags["--max-num-seqs"] == "128"
        assert "--disable-log-requests" not in argv  # removed from vLLM in 0.12
    assert _wait_for(lambda: not _listening(base) and not _listening(base + 2), 15), (
        "servers outlived SIGTERM"
    )


def test_slurm_fleet_writes_one_hosts_file(fake_bin, tmp_path):
    _, env = fake_bin
    base = _free_port_run(2)
    env.update(
        SLURM_JOB_ID="4242",
        SLURM_JOB_NUM_NODES="1",
        SLURM_SUBMIT_DIR=str(tmp_path),
        SERVE=str(DEPLOY / "vllm/serve-gpus.sh"),
        GPUS="0,1",
        BASE_PORT=str(base),
        ADVERTISE="node01",
    )
    hosts = tmp_path / "fleet-4242" / "hosts.txt"
    proc = _start(["bash", str(DEPLOY / "vllm/slurm-fleet.sbatch"), "org/model-8b"], env, tmp_path)
    try:
        assert _wait_for(hosts.exists), "hosts.txt never written"
    finally:
        _stop(proc)
    assert sorted(parse_hosts(hosts.read_text())) == [f"http://node01:{base}", f"http://node01:{base + 1}"]
    assert hosts.read_text().startswith("# vLLM fleet of Slurm job 4242: org/model-8b")
    assert _wait_for(lambda: not _listening(base) and not _listening(base + 1), 15), (
        "servers outlived SIGTERM"
    )


def test_hosts_from_k8s_lists_ready_pods(fake_bin, tmp_path):
    bin_dir, env = fake_bin
    (bin_dir / "kubectl").write_text(
        '#!/bin/sh\n[ "$1" = config ] && exit 0\n'
        "printf 'vllm-10\\t10.1.0.10\\tTrue\\nvllm-2\\t10.1.0.2\\tTrue\\nvllm-1\\t10.1.0.1\\tFalse\\n'\n"
    )
    (bin_dir / "kubectl").chmod(0o755)
    script = str(DEPLOY / "vllm/k8s/hosts-from-k8s.sh")
    out = tmp_path / "hosts.txt"
    result = subprocess.run(
        [script, "-n", "sweep", str(out)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert parse_hosts(out.read_text()) == [
        "http://vllm-2.vllm.sweep.svc.cluster.local:8000",
        "http://vllm-10.vllm.sweep.svc.cluster.local:8000",
    ]
    assert out.read_text().startswith("# 2 of 3 vLLM pods ready")
    result = subprocess.run([script, "--ips"], env=env, capture_output=True, text=True, timeout=30)
    assert parse_hosts(result.stdout) == ["http://10.1.0.2:8000", "http://10.1.0.10:8000"]

    (bin_dir / "kubectl").write_text(
        "#!/bin/sh\n[ \"$1\" = config ] && exit 0\nprintf 'vllm-0\\t\\tFalse\\n'\n"
    )
    result = subprocess.run(
        [script, str(tmp_path / "none.txt")], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "no ready pods" in result.stderr
    assert not (tmp_path / "none.txt").exists()


def test_the_test_only_system_setup_is_clean_quiet_and_idempotent():
    """scripts/setup-test-system.sh (run by `make test`): passes shellcheck, and once everything is
    installed a second run installs nothing and prints one line."""
    script = ROOT / "scripts" / "setup-test-system.sh"
    result = subprocess.run([_tool("shellcheck"), "-s", "bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    for tool in ("prometheus", "promtool", "shellcheck", "chromium"):
        _tool(tool)
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [
        "setup-test-system: prometheus, promtool, shellcheck and chromium already there"
    ]
    makefile = (ROOT / "Makefile").read_text()
    test_target = re.search(r"^test:(.*)$", makefile, re.M).group(1)
    demo_target = re.search(r"^demo:(.*)$", makefile, re.M).group(1)
    assert "test-system" in test_target and "test-system" not in demo_target
    assert re.search(r"^test-system:\n\tbash scripts/setup-test-system.sh$", makefile, re.M)
