"""A stall shows as a stall: the progress line refreshes on a timer, its rate falls to 0 and its
ETA to '?', it says "no progress for N s" and how many servers are up; `engine status` says the
same while the run's fleet is down."""

from __future__ import annotations

import logging
import signal
import subprocess
from dataclasses import replace

import orjson
from fleet_process import ENGINE, simulated_fleet
from hypothesis import given, settings
from hypothesis import strategies as st
from test_resume import wait_until

from engine.progress import Progress, Tally, line
from engine.sweep.snapshot import RATE_WINDOW_S, STALL_AFTER_S, ServerView


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@settings(max_examples=200, deadline=None)
@given(
    schedule=st.lists(st.tuples(st.floats(0.0, 3.0), st.integers(0, 3)), max_size=80),
    total=st.integers(1, 120),
    up=st.integers(0, 4),
)
def test_the_line_tells_a_stall_whatever_the_schedule(schedule, total, up):
    """Invariants, after every tick of a 1-s timer: the line says "no progress for" exactly when no
    sample was verified for STALL_AFTER_S and work remains; once nothing was verified for a whole
    rate window, the rate is 0; a stalled line has no ETA; it always names the servers up."""
    clock = Clock()
    tally = Tally(total, 0, clock=clock)
    fleet = tuple(ServerView(f"http://s{i}", i < up, 0) for i in range(4))

    def snapshot():
        return replace(tally.snapshot(), fleet=fleet)

    progress = Progress(snapshot, enabled=False, clock=clock)
    last_done = clock.now
    for gap, verdicts in schedule:  # (seconds of silence in 1-s ticks, then verdicts)
        for _ in range(int(gap * 10)):
            clock.now += 1.0
            progress.tick()
            text = line(snapshot())
            idle = clock.now - last_done
            stalled = idle >= STALL_AFTER_S and tally.done < total
            assert ("no progress for" in text) == stalled
            assert text.endswith("ETA ?") or not stalled
            assert f"servers up {up}/4" in text
            if idle >= RATE_WINDOW_S + 1.0:
                assert text.startswith(f"verified {tally.done}/{total}") and "0.0 samples/s" in text
                assert text.endswith("ETA ?")
        if verdicts and tally.done < total:
            tally.advance(min(verdicts, total - tally.done))
            last_done = clock.now


def test_a_stall_is_logged_once_when_it_begins_and_the_timer_keeps_logging(caplog):
    clock = Clock()
    tally = Tally(10, 0, clock=clock)
    fleet = (ServerView("http://a", False, 0), ServerView("http://b", False, 0))
    progress = Progress(
        lambda: replace(tally.snapshot(), fleet=fleet), enabled=True, interval=30.0, clock=clock
    )
    tally.advance(3)
    with caplog.at_level(logging.INFO, logger="engine.progress"):
        for _ in range(70):
            clock.now += 1.0
            progress.tick()
    lines = [r.getMessage() for r in caplog.records]
    assert (
        lines[0].startswith("verified 3/10")
        and "no progress for 10 s" in lines[0]
        and "servers up 0/2" in lines[0]
    )
    assert len(lines) == 3 and all("no progress for" in line for line in lines)  # at 10 s, then every 30 s


def test_status_and_the_progress_line_show_the_fleet_down(tmp_path):
    out = tmp_path / "run"
    # 4 sequences per server at 300 tok/s: a sample every ~0.6 s, the sweep ~45 s (even when the
    # engine is slow to start on a busy machine, it is mid-sweep at 25 s), down from 25 s for 30 s
    with simulated_fleet(tmp_path, 2, 300, "--faults", "fleet_down=@25s+30s") as hosts:
        args = [
            *ENGINE,
            "run",
            "--servers",
            str(hosts),
            "--out",
            str(out),
            "--limit",
            "12",
            "--samples",
            "48",
            "--request-n",
            "4",
            "--max-seqs-per-server",
            "4",
            "--no-metrics",
            "--workers",
            "2",
        ]  # not --json: a progress line
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:

            def stalled():
                state = subprocess.run(
                    [*ENGINE, "status", str(out), "--json"], capture_output=True, timeout=60
                )
                state = orjson.loads(state.stdout) if state.returncode == 0 else {}
                down = state.get("target") and state.get("servers_up") == 0  # down mid-sweep
                # A few seconds past the threshold: the store's last verdict time can precede the
                # engine's own by a flush, and the progress line refreshes once a second.
                return state if down and (state["no_progress_s"] or 0) >= STALL_AFTER_S + 3 else None

            wait_until(stalled, timeout=150)
            state = stalled()
            assert (
                state["running"]
                and state["servers"] == 2
                and state["remaining"] > 0
                and state["eta_s"] is None
            ), state
            text = subprocess.run(
                [*ENGINE, "status", str(out)], capture_output=True, text=True, timeout=60
            ).stdout
            assert "servers up 0 of 2" in text and "no progress for" in text
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    stall_lines = [line for line in err.splitlines() if "no progress for" in line]
    assert stall_lines, err
    assert "servers up 0/2" in stall_lines[0] and stall_lines[0].endswith("ETA ?"), stall_lines[0]
