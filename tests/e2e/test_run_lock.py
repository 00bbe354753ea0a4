"""One writer per run: `engine run` holds DIR/run.lock for its whole life; a second writer (run,
run --new-run, verify DIR --retry) ends with one line naming the holder and exit 2; readers
(status, export, report) keep working; a dead holder (SIGKILL) does not block the next run."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time

import orjson
import pytest
from fleet_process import ENGINE, simulated_fleet
from hypothesis import given, settings
from hypothesis import strategies as st
from test_resume import LIMIT, SAMPLES, finish, rows, run_args, start, verified, wait_until

from engine.errors import RunLockedError
from engine.runlock import LOCK_NAME, STALE_AFTER_S, RunLock
from engine.store import Store


def assert_one_line_error(result, *fragments):
    """Exit 2 and one line saying why (progress lines at INFO before it may come and go)."""
    assert result.returncode == 2, result.stderr
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not re.match(r"\d\d:\d\d:\d\d I ", line)
    ]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_second_writers_are_refused_readers_work_and_a_sigkilled_holder_blocks_nothing(tmp_path):
    out = tmp_path / "run"
    slow, fast = tmp_path / "slow", tmp_path / "fast"
    slow.mkdir(), fast.mkdir()
    with simulated_fleet(slow, 1, 100) as hosts:  # the holder needs ~90 s: it outlives every writer below
        first = start(hosts, out)
        try:
            wait_until(lambda: verified(out) >= 2)
            holder = json.loads((out / LOCK_NAME).read_text())
            assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
            writers = [
                run_args(hosts, out),
                run_args(hosts, out, "--new-run"),
                [*ENGINE, "verify", str(out), "--retry", "timeout", "--workers", "1"],
            ]
            for args in writers:
                refused = subprocess.run(args, capture_output=True, text=True, timeout=120)
                assert first.poll() is None, "the holder ended before the test was done with it"
                assert_one_line_error(refused, f"pid {first.pid}", f"host {socket.gethostname()}")
            assert sorted(p.name for p in out.glob("results*.sqlite")) == [
                "results.sqlite"
            ]  # nothing moved aside
            readers = [
                [*ENGINE, "status", str(out), "--json"],
                [*ENGINE, "export", str(out), "--out", "-"],
                [*ENGINE, "report", str(out), "--no-plot"],
            ]
            for args in readers:
                read = subprocess.run(args, capture_output=True, text=True, timeout=120)
                assert read.returncode == 0, read.stderr
            assert first.poll() is None  # the holder was not disturbed
        finally:
            first.kill()  # SIGKILL: no chance to release anything
            first.wait(timeout=60)
    with simulated_fleet(fast, 2, 20_000) as hosts:  # the same model on another fleet: the run resumes
        final = finish(hosts, out)
    assert final["samples"] == LIMIT * SAMPLES
    assert len(rows(out)) == LIMIT * SAMPLES
    assert (out / LOCK_NAME).read_text() == ""  # released at the end


def test_two_runs_started_at_once_one_runs_the_other_is_refused(tmp_path):
    out = tmp_path / "run"
    with simulated_fleet(tmp_path, 1, 50) as hosts:  # ~30 s of sweep: the two overlap however slow they start
        both = [start(hosts, out, "--limit", "2"), start(hosts, out, "--limit", "2")]
        results = [(p.wait(timeout=300), p.communicate()) for p in both]
    assert sorted(code for code, _ in results) == [0, 2]
    refused = next(err for code, (_, err) in results if code == 2)
    assert "in use by engine pid" in refused and refused.strip().count("\n") == 0
    winner = next(orjson.loads(out_) for code, (out_, _) in results if code == 0)
    assert winner["samples"] == 2 * SAMPLES and len(rows(out)) == 2 * SAMPLES


# -- the lock itself, in process ------------------------------------------------------------------


def test_held_lock_refuses_until_released(tmp_path):
    lock = RunLock.acquire(tmp_path)
    with pytest.raises(RunLockedError, match=f"pid {__import__('os').getpid()}"):
        RunLock.acquire(tmp_path)
    lock.release()
    RunLock.acquire(tmp_path).release()


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.5])
def test_a_holder_that_names_itself_a_moment_after_taking_the_lock_is_named(tmp_path, delay_s):
    """Invariant: the refusal names the holder even when the second writer arrives between the
    holder's flock and its record (CI caught the generic message once, with two runs started
    at once); a holder that never names itself still gets a refusal, the generic one."""
    import fcntl
    import os
    import threading

    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken, not yet named
    record = json.dumps({"pid": 4242, "host": "elsewhere", "started": time.time()}).encode()
    naming = threading.Timer(delay_s, lambda: os.pwrite(fd, record, 0))
    naming.start()
    try:
        with pytest.raises(RunLockedError, match="pid 4242 on host elsewhere"):
            RunLock.acquire(tmp_path)
    finally:
        naming.join()
    os.ftruncate(fd, 0)  # a holder that never names itself
    with pytest.raises(RunLockedError, match="in use by another engine process"):
        RunLock.acquire(tmp_path)
    os.close(fd)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "[]",
        '{"pid": 1}',
        json.dumps({"pid": 99999999, "host": socket.gethostname(), "started": time.time()}),
    ],
)
def test_a_lock_file_without_a_living_holder_on_this_host_is_taken(tmp_path, text):
    (tmp_path / LOCK_NAME).write_text(text)  # what a SIGKILLed or rebooted holder leaves
    with RunLock.acquire(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["host"] == socket.gethostname()


@settings(max_examples=30, deadline=None)
@given(age=st.floats(0.0, 4 * STALE_AFTER_S), own_heartbeat=st.booleans())
def test_a_holder_on_another_host_holds_while_its_heartbeat_is_fresh(tmp_path_factory, age, own_heartbeat):
    """Invariant: on a shared file system whose flocks do not reach across hosts, another host's
    holder blocks exactly while its heartbeat (or, before its first one, its lock) is younger than
    STALE_AFTER_S."""
    directory = tmp_path_factory.mktemp("run")
    now = 1_000_000.0
    holder = {"pid": 4242, "host": "other-host", "started": now - age}
    (directory / LOCK_NAME).write_text(json.dumps(holder))
    store = Store.open(directory)
    beat_pid = 4242 if own_heartbeat else 1  # a heartbeat of an earlier holder does not count
    store.set_meta("heartbeat", {"pid": beat_pid, "host": "other-host", "time": now - age})
    store.close()
    if age < STALE_AFTER_S:
        with pytest.raises(RunLockedError, match="pid 4242 on host other-host"):
            RunLock.acquire(directory, now=now)
    else:
        RunLock.acquire(directory, now=now).release()
