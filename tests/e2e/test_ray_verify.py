"""--verify-on ray on a local Ray cluster of two nodes (tests/helpers/ray_cluster.py): the same verdicts
as local mode, every sample stored exactly once, and nothing lost when a node dies mid-sweep."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import time
import urllib.request

import orjson
import pytest

from engine.tasks import load_problems

pytest.importorskip("ray", reason="Ray is not installed (pip install 'engine[ray]')")

from fleet_process import ENGINE, simulated_fleet  # noqa: E402
from ray_cluster import free_port_block, ray_cluster  # noqa: E402

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster() as running:
        yield running


def export(run_dir) -> dict[tuple[str, int], tuple[str, str]]:
    """(task_id, sample_index) -> (completion, result), failing on a sample stored twice."""
    done = subprocess.run([*ENGINE, "export", str(run_dir), "--out", "-"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [orjson.loads(line) for line in done.stdout.splitlines()]
    table = {(r["task_id"], r["sample_index"]): (r["completion"], r["result"]) for r in rows}
    assert len(table) == len(rows), "a sample stored twice"
    return table


def sweep(hosts, out, *extra, env=None, timeout=300) -> tuple[dict, str]:
    done = subprocess.run(
        [*ENGINE, "run", "--servers", str(hosts), "--out", str(out), "--metrics-port", "0", "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout), done.stderr


def test_a_sweep_on_ray_verifies_every_sample_once_with_the_local_verdicts(tmp_path, cluster):
    """Invariant: the same sweep (same fleet, same seeds) stores the same samples with the same
    verdicts whether verified here or on the cluster's two nodes, each sample exactly once."""
    problems, samples = 4, 6
    with simulated_fleet(tmp_path, servers=2) as hosts:
        # A fixed --timeout: no calibration of all 164 problems, the same limits in both modes.
        args = ["--limit", str(problems), "--samples", str(samples), "--no-dedup", "--timeout", "3"]
        local, _ = sweep(hosts, tmp_path / "local", *args, "--workers", "2")
        remote, err = sweep(hosts, tmp_path / "ray", *args, "--verify-on", "ray", env=cluster.env())
    assert local["samples"] == remote["samples"] == problems * samples
    assert remote["verdicts"] == local["verdicts"] and remote["infra_errors"] == 0
    assert export(tmp_path / "ray") == export(tmp_path / "local")
    assert "Ray node head" in err and "Ray node worker" in err  # an actor on each node


def mixed_lines() -> list[dict]:
    lines = []
    for p in load_problems(limit=3):
        lines += [
            {"task_id": p.task_id, "completion": p.canonical_solution},
            {"task_id": p.task_id, "completion": "    return None\n"},
            {"task_id": p.task_id, "completion": "    import os\n    os._exit(0)\n"},
            {"task_id": p.task_id, "completion": "    raise MemoryError\n"},
            {"task_id": p.task_id, "completion": p.canonical_solution},  # a twin: dedup
        ]
    lines.append({"task_id": lines[0]["task_id"], "completion": "    while True:\n        pass\n"})
    lines.append({"task_id": lines[0]["task_id"], "completion": "    import ctypes; ctypes.string_at(0)\n"})
    return lines


def test_verify_on_ray_client_agrees_with_local_on_a_mixed_file(tmp_path, cluster):
    """Every line gets the verdict local mode gives it: pass, fail, an early exit 0, a busy loop
    (timeout), a crash, identical samples; through Ray Client (ray://)."""
    lines = mixed_lines()
    samples = tmp_path / "samples.jsonl"
    samples.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    results = {}
    for mode in ("local", cluster.client_address):
        out = tmp_path / f"{len(results)}.jsonl"
        done = subprocess.run(
            [
                *ENGINE,
                "verify",
                str(samples),
                "--out",
                str(out),
                "--json",
                "--timeout",
                "3",
                "--verify-on",
                mode,
            ],
            capture_output=True,
            text=True,
            env=cluster.env(),
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        results[mode] = [
            (r["task_id"], r["passed"], r["result"]) for r in map(orjson.loads, out.read_bytes().splitlines())
        ]
    local, remote = results.values()
    assert len(remote) == len(lines) and remote == local
    assert {r for _, _, r in local} >= {"passed", "failed", "timeout", "error"}


def slow_dataset(tmp_path, count: int = 3) -> str:
    """HumanEval problems whose test sleeps first: every program holds its sandbox ~0.6 s, so a
    node always has programs in flight while the sweep runs."""
    path = tmp_path / "slow.jsonl"
    rows = []
    for p in load_problems(limit=count):
        test = "import time\n" + p.test.replace(
            "def check(candidate):\n", "def check(candidate):\n    time.sleep(0.6)\n", 1
        )
        rows.append(
            {
                "task_id": p.task_id,
                "prompt": p.prompt,
                "canonical_solution": p.canonical_solution,
                "test": test,
                "entry_point": p.entry_point,
            }
        )
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return str(path)


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


def node_series(text: str, name: str, node: str) -> float:
    return sum(float(v) for v in re.findall(rf'^{name}\{{[^}}]*node="{node}"[^}}]*\}} (\S+)$', text, re.M))


def test_killing_a_nodes_raylet_mid_sweep_loses_no_sample(tmp_path):
    """Invariant: with one node's raylet killed while it holds programs, the sweep still ends
    with exit 0 and every sample of the target stored exactly once with a verdict (none
    infra_error): the lost node's programs ran again on the other one."""
    dataset = slow_dataset(tmp_path)
    problems, samples, port = 3, 8, free_port_block(1)[0]
    with ray_cluster() as two_nodes, simulated_fleet(tmp_path, 2, 20_000, "--dataset", dataset) as hosts:
        run = subprocess.Popen(
            [
                *ENGINE,
                "run",
                "--servers",
                str(hosts),
                "--dataset",
                dataset,
                "--limit",
                str(problems),
                "--samples",
                str(samples),
                "--no-dedup",
                "--out",
                str(tmp_path / "run"),
                "--metrics-port",
                str(port),
                "--verify-on",
                "ray",
                "--json",
            ],
            stdout=open(tmp_path / "stdout", "wb"),  # noqa: SIM115 (closed with the process)
            stderr=open(tmp_path / "stderr", "wb"),  # noqa: SIM115
            env=two_nodes.env(),
        )
        try:
            deadline = time.monotonic() + 240
            while node_series(scrape(port), "engine_node_verifications_total", "worker") < 1:
                assert run.poll() is None and time.monotonic() < deadline, "the worker node never verified"
                time.sleep(0.2)
            raylet = two_nodes.nodes["worker"].raylet_pid()
            subprocess.run(["kill", "-9", str(raylet)], check=True)
            lost_seen = False
            while run.poll() is None:  # scraping to the end: the engine waits for a last scrape
                lost_seen = lost_seen or node_series(scrape(port), "engine_node_up", "worker") == 0
                assert time.monotonic() < deadline + 300, "the sweep did not end"
                time.sleep(0.3)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    out, err = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()
    assert run.returncode == 0, err
    summary = orjson.loads(out)  # one JSON object: Ray's own messages go to stderr
    assert summary["samples"] == problems * samples and summary["infra_errors"] == 0
    assert "Ray node worker lost" in err and lost_seen  # in the log and in engine_node_up
    stored = export(tmp_path / "run")
    assert len(stored) == problems * samples
    assert all(result in ("passed", "failed", "timeout", "oom", "error") for _, result in stored.values())
    with sqlite3.connect(f"file:{tmp_path / 'run' / 'results.sqlite'}?mode=ro", uri=True) as db:
        assert db.execute("SELECT count(*) FROM samples WHERE verdict IS NULL").fetchone() == (0,)
