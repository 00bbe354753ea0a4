"""A killed run's leftovers (its staging directories in /tmp, its cgroups) are removed by the next
run; those of a live engine process are not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import uvloop

from sandbox import SandboxPool
from sandbox.cgroups import CGROUP_ROOT, sweep_leftovers

HOLD_A_POOL = """
import sys, uvloop
from sandbox import SandboxPool

async def main():
    async with SandboxPool(workers=1):
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes our stdin (or kills us)

uvloop.run(main())
"""


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid  # reaped: no process has it (until the kernel reuses it, long after this test)


def leftovers(pid: int) -> list[Path]:
    mine = f"engine-sandbox-{pid}-*"
    found = list(Path("/tmp").glob(mine))
    for controller in ("cpu", "cpuacct", "memory"):
        for level in range(3):
            found += (CGROUP_ROOT / controller).glob("/".join(["*"] * level + [mine]))
    return found


def start_engine() -> subprocess.Popen:
    engine = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_POOL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert engine.stdout is not None and engine.stdout.readline() == "ready\n"
    return engine


def test_the_next_run_removes_a_killed_runs_leftovers_but_not_a_live_ones() -> None:
    """Invariant: after a pool starts, nothing named after a dead engine process remains, and
    everything of a live one does (until it closes its pool, which removes it)."""
    killed, live = start_engine(), start_engine()
    try:
        assert leftovers(killed.pid) and leftovers(live.pid)  # staging dir and cgroups of each
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert leftovers(killed.pid)  # SIGKILL: nothing could clean up

        async def next_run() -> None:
            async with SandboxPool(workers=1):
                pass

        uvloop.run(next_run())
        assert leftovers(killed.pid) == []
        live_ones = leftovers(live.pid)
        assert live_ones and all(path.exists() for path in live_ones)
    finally:
        for engine in (killed, live):
            if engine.poll() is None:
                assert engine.stdin is not None
                engine.stdin.close()
                engine.wait(timeout=60)
    assert leftovers(live.pid) == []  # it closed its own pool


@pytest.mark.parametrize("level", [0, 1, 2])
def test_leftovers_are_found_at_every_depth_searched_with_their_children(tmp_path: Path, level: int) -> None:
    """cgroups of a dead engine nested `level` directories deep (it lived in another cgroup than
    ours) and their per-jail children are removed; a name of a live pid (ours) or another name
    stays, at every depth."""
    gone = dead_pid()
    base = tmp_path / "memory" / "/".join(f"d{i}" for i in range(level))
    dead = base / f"engine-sandbox-{gone}-ab12"
    (dead / "engine-sandbox-nsjail-1").mkdir(parents=True)
    (dead / "engine-sandbox-nsjail-2").mkdir()
    live = base / f"engine-sandbox-{os.getpid()}-cd34"
    other = base / "engine-sandbox-notapid"
    live.mkdir()
    other.mkdir()
    stage = tmp_path / "tmp" / f"engine-sandbox-{gone}-x1"
    (stage / "python").mkdir(parents=True)
    removed = sweep_leftovers(tmp_dirs=(str(tmp_path / "tmp"),), cgroup_root=tmp_path)
    assert not dead.exists() and not stage.exists() and live.exists() and other.exists()
    assert set(removed) >= {dead, stage}


def test_nothing_deeper_than_the_search_depth_is_touched(tmp_path: Path) -> None:
    deep = tmp_path / "cpu" / "a" / "b" / "c" / f"engine-sandbox-{dead_pid()}-ef56"
    deep.mkdir(parents=True)
    removed = sweep_leftovers(tmp_dirs=(), cgroup_root=tmp_path)
    assert deep.exists() and not any(path.is_relative_to(tmp_path) for path in removed)
