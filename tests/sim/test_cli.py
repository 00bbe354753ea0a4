"""`engine simulate` as a process: hosts file, serving, clean exit, bad input."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vllm_sim.command import HOSTS_HEADER

SIMULATE = [sys.executable, "-m", "vllm_sim"]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([*SIMULATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no hosts file"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_until_signalled_then_exits_cleanly(tmp_path, sig):
    hosts = tmp_path / "hosts.txt"
    proc = start("--servers", "3", "--hosts-file", str(hosts), "--tokens-per-second", "1000")
    try:
        wait_for(hosts, proc)
        header, *urls = hosts.read_text().splitlines()
        assert header == HOSTS_HEADER and len(urls) == 3 and len(set(urls)) == 3
        for url in urls:
            assert url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                assert r.status == 200
        assert not list(tmp_path.glob(".hosts.txt.*")), "the temporary file was renamed into place"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "SIMULATED" in err and "Traceback" not in err


def test_base_port_numbers_the_servers(tmp_path):
    with socket.socket() as probe:  # a free port, likely followed by another free one
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
    hosts = tmp_path / "hosts.txt"
    proc = start("--servers", "2", "--hosts-file", str(hosts), "--base-port", str(base))
    try:
        wait_for(hosts, proc)
        assert hosts.read_text().splitlines()[1:] == [
            f"http://127.0.0.1:{base}",
            f"http://127.0.0.1:{base + 1}",
        ]
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def _fails(*args: str) -> str:
    done = subprocess.run([*SIMULATE, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_input_is_one_line_and_status_2(tmp_path):
    hosts = str(tmp_path / "hosts.txt")
    assert "--servers" in _fails("--servers", "0", "--hosts-file", hosts)
    assert "hosts file" in _fails("--servers", "1", "--hosts-file", str(tmp_path / "missing" / "hosts.txt"))
    assert "dataset" in _fails(
        "--servers", "1", "--hosts-file", hosts, "--dataset", str(tmp_path / "none.jsonl")
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert "cannot listen" in _fails("--servers", "1", "--hosts-file", hosts, "--base-port", str(port))
    assert not Path(hosts).exists()
