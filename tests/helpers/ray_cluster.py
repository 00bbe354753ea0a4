"""A local Ray cluster of two nodes for tests: `ray start --head` plus a second `ray start
--address`, each with its own ports, temp directory, name and CPUs; --node-ip-address 127.0.0.1,
no dashboard, no usage stats: no traffic leaves the machine. (Ray 2.60 still resolves 127.0.0.1 to
the machine's own address and its gRPC servers listen on every interface; it has no loopback-only
mode for a cluster of more than one node.) Torn down always, by process group
and then by pid of anything still naming its temp directories (never a machine-wide `ray stop`:
other people's clusters may run here)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
# A node whose raylet stops answering is declared dead within about 2 s (Ray's default: ~30 s).
FAST_HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
}
QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


NODE_PORTS = 60  # a node's ports: its services first, then its workers'
_handed_out: set[int] = set()  # ports given to a node of this process, bound yet or not


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(size: int = NODE_PORTS) -> range:
    """`size` consecutive ports free now and not handed out before (Ray wants every port distinct)."""
    for _ in range(100):
        block = range(start := free_port(), start + size)
        if block.stop > 65535 or _handed_out.intersection(block):
            continue
        try:
            with contextlib.ExitStack() as held:
                for port in block:
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.update(block)
        return block
    raise RuntimeError("no block of free ports")


@dataclass
class RayNode:
    name: str
    temp_dir: Path
    process: subprocess.Popen
    log: Path

    def pids(self) -> list[int]:
        """This node's processes: its `ray start` group, and whatever names its temp directory."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                group = os.getpgid(int(entry.name))
            except (OSError, ProcessLookupError):
                continue
            if group == self.process.pid or str(self.temp_dir) in cmdline:
                found.append(int(entry.name))
        return found

    def raylet_pid(self) -> int:
        for pid in self.pids():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
        raise RuntimeError(f"node {self.name} has no raylet")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=3)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


@dataclass
class RayCluster:
    address: str  # the GCS, for RAY_ADDRESS (--verify-on ray)
    client_address: str  # ray://127.0.0.1:PORT (--verify-on ray://...)
    nodes: dict[str, RayNode] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The environment of an engine that should find this cluster with address=auto."""
        return {**os.environ, **QUIET_ENV, "RAY_ADDRESS": self.address}


def _start_node(name: str, base: Path, cpus: int, ports: range, extra: list[str]) -> RayNode:
    temp_dir = base / name
    temp_dir.mkdir(parents=True)
    log = base / f"{name}.log"
    command = [
        RAY,
        "start",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--node-name={name}",
        f"--temp-dir={temp_dir}",
        f"--num-cpus={cpus}",
        "--object-store-memory=80000000",
        "--disable-usage-stats",
        f"--node-manager-port={ports[0]}",
        f"--object-manager-port={ports[1]}",
        f"--dashboard-agent-listen-port={ports[2]}",
        f"--dashboard-agent-grpc-port={ports[3]}",
        f"--runtime-env-agent-port={ports[4]}",
        f"--metrics-export-port={ports[5]}",
        f"--min-worker-port={ports[10]}",
        f"--max-worker-port={ports[-1]}",
        *extra,
    ]
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **QUIET_ENV},
            start_new_session=True,
        )
    return RayNode(name, temp_dir, process, log)


def _wait_started(node: RayNode, timeout_s: float = 180.0) -> None:
    """Until `ray start` says the node runs (its raylet has joined the cluster)."""
    deadline = time.monotonic() + timeout_s
    while b"Ray runtime started" not in node.log.read_bytes():
        if node.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray node {node.name} did not start: {node.log.read_text()[-2000:]}")
        time.sleep(0.2)


def _start_with_retry(
    cluster: RayCluster, name: str, base: Path, cpus: int, ports: range, extra: list[str], attempts: int = 2
) -> None:
    """A node of the cluster, started again once if it fails: on a loaded machine Ray's own
    start-up deadlines (30 s to hear from the GCS) are sometimes missed."""
    for attempt in range(1, attempts + 1):
        node = cluster.nodes[name] = _start_node(name, base / str(attempt), cpus, ports, extra)
        try:
            _wait_started(node)
            return
        except RuntimeError:
            node.stop()
            if attempt == attempts:
                raise


def _wait_for_nodes(cluster: RayCluster, count: int, timeout_s: float = 180.0) -> None:
    probe = "import ray, sys; ray.init(logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for node in cluster.nodes.values():
            if node.process.poll() is not None:
                raise RuntimeError(f"ray node {node.name} exited: {node.log.read_text()[-2000:]}")
        done = subprocess.run(
            [sys.executable, "-c", probe], env=cluster.env(), capture_output=True, text=True, timeout=120
        )
        if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(1)
    raise RuntimeError(f"the Ray cluster did not reach {count} nodes in {timeout_s:.0f} s")


@contextlib.contextmanager
def ray_cluster(cpus_per_node: int = 1):
    """Nodes "head" and "worker", each declaring `cpus_per_node` CPUs (two sandboxes per CPU)."""
    base = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    head_ports, worker_ports = free_port_block(), free_port_block()
    gcs, client = head_ports[6], head_ports[7]
    cluster = RayCluster(f"127.0.0.1:{gcs}", f"ray://127.0.0.1:{client}")
    try:
        head = [
            "--head",
            f"--port={gcs}",
            f"--ray-client-server-port={client}",
            "--include-dashboard=false",
            f"--dashboard-port={head_ports[8]}",
            f"--system-config={json.dumps(FAST_HEALTH_CHECKS)}",
        ]
        _start_with_retry(cluster, "head", base, cpus_per_node, head_ports, head)
        worker = [f"--address={cluster.address}"]
        _start_with_retry(cluster, "worker", base, cpus_per_node, worker_ports, worker)
        _wait_for_nodes(cluster, 2)
        yield cluster
    finally:
        for node in reversed(list(cluster.nodes.values())):
            node.stop()
        shutil.rmtree(base, ignore_errors=True)
