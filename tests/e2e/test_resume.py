"""Long sweeps: stop, crash, resume, status. `engine run` runs as a real process here."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import time

import orjson
import pytest
from fleet_process import ENGINE, simulated_fleet

from engine.status import run_status

LIMIT, SAMPLES = 12, 16


def run_args(hosts, out, *extra):
    return [
        *ENGINE,
        "run",
        "--servers",
        str(hosts),
        "--out",
        str(out),
        "--limit",
        str(LIMIT),
        "--samples",
        str(SAMPLES),
        "--request-n",
        "8",
        "--no-metrics",
        "--workers",
        "2",
        "--json",
        *extra,
    ]


def start(hosts, out, *extra):
    return subprocess.Popen(
        run_args(hosts, out, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(hosts, out, *extra) -> dict:
    result = subprocess.run(run_args(hosts, out, *extra), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def rows(out) -> dict[tuple[str, int], tuple[str, str]]:
    """(task, index) -> (completion, verdict), checking there is one row per sample."""
    db = sqlite3.connect(out / "results.sqlite")
    found = db.execute("SELECT task_id, sample_index, completion, verdict FROM samples").fetchall()
    db.close()
    table = {(t, i): (c, v) for t, i, c, v in found}
    assert len(table) == len(found)
    return table


def verified(out) -> int:
    try:
        db = sqlite3.connect(out / "results.sqlite")
        try:
            return db.execute("SELECT COUNT(verdict) FROM samples").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def wait_until(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_sigkill_at_ten_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    rng = random.Random(7)
    target = LIMIT * SAMPLES
    with simulated_fleet(tmp_path, 2, 6000) as hosts:
        reference = finish(hosts, tmp_path / "reference")
        crashed = tmp_path / "crashed"
        for _ in range(10):
            process = start(hosts, crashed)
            before = verified(crashed)
            # kill somewhere between start-up and the end of the sweep, at a random moment
            wait_until(lambda: verified(crashed) > before or process.poll() is not None)
            time.sleep(rng.uniform(0.0, 1.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert len(rows(crashed)) <= target
        summary = finish(hosts, crashed)
    assert summary["samples"] == reference["samples"] == target
    assert rows(crashed) == rows(tmp_path / "reference")  # same samples, same verdicts
    assert summary["pass_at_k"] == reference["pass_at_k"]


def test_first_signal_drains_and_exits_zero_second_stops_at_once_both_resumable(tmp_path):
    out = tmp_path / "run"
    with simulated_fleet(tmp_path, 1, 300) as hosts:  # slow: the sweep takes long enough to stop
        process = start(
            hosts, out, "--queue-size", "16"
        )  # admission, not the fleet, limits the work in flight
        wait_until(lambda: verified(out) >= 8)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        summary = orjson.loads(stdout)
        assert summary["stopped"] and 8 <= summary["samples"] < LIMIT * SAMPLES
        assert "run the same command to resume" in stderr
        drained = rows(out)
        assert all(v is not None for _, v in drained.values())  # live work finished before exit

        process = start(hosts, out)
        wait_until(lambda: verified(out) > summary["samples"])
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        assert process.returncode == 0

    with simulated_fleet(tmp_path, 2, 20_000) as hosts:
        final = finish(hosts, out)
    assert final["samples"] == LIMIT * SAMPLES and not final["stopped"]
    assert len(rows(out)) == LIMIT * SAMPLES


def test_status_while_running_and_after(tmp_path):
    out = tmp_path / "run"
    with simulated_fleet(tmp_path, 1, 500) as hosts:
        process = start(hosts, out)
        try:
            wait_until(lambda: verified(out) >= 4)
            wait_until(lambda: run_status(str(out))["running"], timeout=30)
            live = subprocess.run(
                [*ENGINE, "status", str(out), "--json"], capture_output=True, text=True, timeout=60
            )
            assert live.returncode == 0, live.stderr
            state = orjson.loads(live.stdout)
            assert state["running"] and state["target"] == LIMIT * SAMPLES
            assert (
                0 < state["samples"] < state["target"]
                and state["remaining"] == state["target"] - state["samples"]
            )
            assert state["rate_per_s"] > 0 and state["eta_s"] > 0 and "1" in state["pass_at_k"]
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=120)
    text = subprocess.run([*ENGINE, "status", str(out)], capture_output=True, text=True, timeout=60).stdout
    assert "not running" in text and "remaining" in text


def test_other_sampling_settings_are_refused_unless_new_run(tmp_path):
    out = tmp_path / "run"
    with simulated_fleet(tmp_path) as hosts:
        finish(hosts, out)
        refused = subprocess.run(
            run_args(hosts, out, "--temperature", "0.2"), capture_output=True, text=True, timeout=120
        )
        assert refused.returncode == 2
        assert refused.stderr.count("\n") == 1 and "temperature 0.8 -> 0.2" in refused.stderr
        fresh = finish(hosts, out, "--temperature", "0.2", "--new-run")
    assert fresh["new_samples"] == LIMIT * SAMPLES
    kept = [p for p in out.iterdir() if p.name.startswith("results.") and p.name != "results.sqlite"]
    assert (
        len(kept) == 1
        and sqlite3.connect(kept[0]).execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 192
    )


@pytest.mark.parametrize("limit_bytes", [64 * 1024])
def test_a_full_disk_stops_with_one_line_and_keeps_what_was_saved(tmp_path, limit_bytes):
    import resource

    out = tmp_path / "run"
    with simulated_fleet(tmp_path) as hosts:
        finish(hosts, out, "--limit", "2")  # something saved before the disk fills
        saved = rows(out)

        def small_disk():  # files of this process may not grow past limit_bytes: a full disk
            # (a soft limit: the sandbox sets its own for the jail, under the unlimited hard one)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))

        result = subprocess.run(
            run_args(hosts, out), capture_output=True, text=True, timeout=300, preexec_fn=small_disk
        )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "cannot write" in lines[0] and "Traceback" not in result.stderr
    after = rows(out)
    assert all(after[key] == value for key, value in saved.items())  # nothing collected was lost
