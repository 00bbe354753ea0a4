"""deploy/ray/: the Slurm script starts a Ray head, then workers, then the engine on Ray, and
ends with the engine's status; the KubeRay manifest is consistent with what the engine needs.
(yaml parsing, `bash -n` and shellcheck of these files: tests/test_deploy.py, over all of deploy/.)"""

import os
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SBATCH = DEPLOY / "ray/slurm-ray.sbatch"

# Fakes, each appending one line "name args..." (and RAY_ADDRESS for the engine) to $CALLS.
FAKES = {
    "scontrol": 'echo "scontrol $*" >> "$CALLS"; printf "n1\\nn2\\nn3\\n"',
    "srun": 'echo "srun $*" >> "$CALLS"\nwhile [ $# -gt 0 ]; do case $1 in -w|--exclude) shift 2;; -*) shift;; *) break;; esac; done\nexec "$@"',
    "hostname": 'echo "10.9.8.7"',
    "ray": 'echo "ray $*" >> "$CALLS"; exec sleep 60',  # `ray start --block` stays until killed
    # The wait for nodes: done once both `ray start` commands ran.
    "python3": 'cat > /dev/null; until [ "$(grep -c "^ray start" "$CALLS")" -ge 2 ]; do sleep 0.05; done\necho "python3 $*" >> "$CALLS"',
    "engine": 'echo "engine $* RAY_ADDRESS=$RAY_ADDRESS" >> "$CALLS"; exit 3',
}


def test_slurm_script_starts_the_head_then_the_workers_then_the_engine_on_ray(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(calls),
        "SLURM_JOB_ID": "77",
        "SLURM_JOB_NODELIST": "n[1-3]",
        "SLURM_CPUS_ON_NODE": "8",
        "RAY_USAGE_STATS_ENABLED": "1",
    }
    done = subprocess.run(
        ["bash", str(SBATCH), "--servers", "hosts.txt", "--samples", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr  # the engine's own status
    lines = calls.read_text().splitlines()
    rays = [line for line in lines if line.startswith("ray ")]
    head = next(line for line in rays if "--head" in line)
    worker = next(line for line in rays if "--address" in line)
    for line in (head, worker):  # both blocking in their srun step, quiet, in the job's temp dir
        assert "--block" in line and "--disable-usage-stats" in line and "--temp-dir /tmp/ray-77" in line
    assert "--node-ip-address 10.9.8.7 --port 6379 --num-cpus 6" in head  # 2 CPUs kept for the engine
    assert "--address 10.9.8.7:6379 --num-cpus 8" in worker
    assert any("--nodes=2 --ntasks=2 --exclude n1" in line for line in lines if line.startswith("srun"))
    engine = lines[-1]
    assert engine == "engine run --verify-on ray --servers hosts.txt --samples 5 RAY_ADDRESS=10.9.8.7:6379"
    assert lines.index(engine) > max(lines.index(head), lines.index(worker))


def test_the_script_without_arguments_says_how_to_run_it():
    done = subprocess.run(["bash", str(SBATCH)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.startswith("usage: sbatch deploy/ray/slurm-ray.sbatch")


def test_kuberay_manifest_keeps_sandboxes_off_the_head_and_usage_stats_off():
    (cluster,) = yaml.safe_load_all((DEPLOY / "ray/k8s/raycluster.yaml").read_text())
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the engine's node: alive_nodes() gives it no actor
    (group,) = cluster["spec"]["workerGroupSpecs"]
    (worker,) = group["template"]["spec"]["containers"]
    (head_container,) = head["template"]["spec"]["containers"]
    assert worker["securityContext"]["privileged"] is True  # nsjail's namespaces and cgroups
    # The CPUs Ray is told are the CPUs the pod gets: the actor sizes its sandboxes from them.
    assert group["rayStartParams"]["num-cpus"] == worker["resources"]["limits"]["cpu"]
    for container in (worker, head_container):
        assert {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"} in container["env"]
        assert container["image"] == head_container["image"]  # one engine version everywhere
    assert cluster["spec"]["rayVersion"].startswith("2.")
