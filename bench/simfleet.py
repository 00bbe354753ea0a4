"""The two processes the end-to-end benchmarks run: `engine simulate` and `engine run`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ENGINE = [sys.executable, "-m", "engine"]


def metric(text: str, name: str) -> float:
    """Sum of a metric's samples over all its label sets."""
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def start_simulator(hosts: Path, servers: int, tokens_per_second: int) -> subprocess.Popen:
    """The simulated fleet, once it has written its hosts file."""
    simulator = subprocess.Popen(
        [
            *ENGINE,
            "simulate",
            "--servers",
            str(servers),
            "--hosts-file",
            str(hosts),
            "--tokens-per-second",
            str(tokens_per_second),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not hosts.exists():
        if simulator.poll() is not None:
            raise SystemExit("the simulator did not start")
        time.sleep(0.1)
    return simulator


def start_engine(
    hosts: Path, samples: int, work: Path, workers: int | None, extra: list[str]
) -> tuple[subprocess.Popen, int]:
    """`engine run` over all of HumanEval into work/run, logging to work/engine.log; and its metrics port."""
    log = work / "engine.log"
    with open(log, "w") as sink:
        engine = subprocess.Popen(
            [
                *ENGINE,
                "run",
                "--servers",
                str(hosts),
                "--samples",
                str(samples),
                "--out",
                str(work / "run"),
                "--metrics-port",
                "0",
                *(["--workers", str(workers)] if workers else []),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    while True:
        found = re.search(r"metrics on http://127.0.0.1:(\d+)/", log.read_text())
        if found:
            return engine, int(found.group(1))
        if engine.poll() is not None:
            raise SystemExit(f"the engine exited early; see {log}")
        time.sleep(0.1)


def stop(*processes: subprocess.Popen | None) -> None:
    """SIGTERM (the graceful stop), then SIGKILL after a minute."""
    for process in processes:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
