"""`engine simulate` as a separate process, for tests that run `engine run` as a process too."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

ENGINE = [sys.executable, "-m", "engine"]


@contextlib.contextmanager
def simulated_fleet(tmp_path: Path, servers: int = 2, tokens_per_second: int = 20_000, *extra: str):
    hosts = tmp_path / "hosts.txt"
    hosts.unlink(missing_ok=True)  # a previous fleet's file would name dead ports
    process = subprocess.Popen(
        [
            *ENGINE,
            "simulate",
            "--servers",
            str(servers),
            "--hosts-file",
            str(hosts),
            "--tokens-per-second",
            str(tokens_per_second),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not hosts.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read() if process.stderr else ""
                raise RuntimeError(f"simulator did not start: {stderr}")
            time.sleep(0.05)
        yield hosts
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
