"""sandbox/calibration.py and the verifier's use of it: a calibration is measured once per
(dataset, sandbox settings, machine), reused after, and a damaged cache file costs a warning
and a fresh measurement, never a traceback."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tasks import TASKS
from engine.tasks.humaneval import problem
from sandbox import Limits, Outcome, SandboxPool, Verdict
from sandbox.calibration import Calibration, CalibrationCache, calibration_key, machine_fingerprint
from sandbox.verifier import Timing, Verifier

HUMANEVAL = TASKS["humaneval"]
FIELDS = ("task_id", "prompt", "test", "entry_point", "canonical_solution")
ROWS = [
    (f"T/{i}", f"def f{i}(x):\n", "def check(c):\n    assert c(1) == 1\n", f"f{i}", "    return x\n")
    for i in range(12)
]
PROBLEMS = [problem(*row) for row in ROWS] + [
    problem("T/none", "def g(x):\n", "def check(c):\n    assert c(1) == 1\n", "g", None)
]
SETTINGS = {"backend": "nsjail", "limits": Limits().to_dict(), "timing": {"floor_s": 3.0}}
MACHINE = {"host": "h", "cpu": "c", "cores": 2, "kernel": "k", "python": "3"}

times = st.floats(min_value=0, max_value=1e6, allow_nan=False)
calibrations = st.builds(
    Calibration,
    st.dictionaries(st.text(max_size=20), st.tuples(times, times), max_size=5),
    st.lists(st.text(max_size=20), max_size=3).map(tuple),
)


@settings(max_examples=50, deadline=None)
@given(calibrations)
def test_a_stored_calibration_loads_back_equal_and_other_keys_miss(calibration: Calibration) -> None:
    """Invariant: load(key) after store(key, c) == c (empty and one-problem calibrations too);
    every other key misses."""
    with tempfile.TemporaryDirectory() as tmp:
        cache = CalibrationCache(Path(tmp) / "engine")  # not there yet: created by store()
        assert cache.load("k1") is None
        cache.store("k1", calibration)
        assert cache.load("k1") == calibration
        assert cache.load("k2") is None


def references(problems) -> list[tuple[str, str]]:
    """What the verifier keys calibration on: each reference solution's program."""
    return [
        (p.task_id, HUMANEVAL.program(p, reference, guards=True))
        for p in problems
        if (reference := HUMANEVAL.reference(p))
    ]


def test_the_key_changes_with_the_dataset_the_settings_and_the_machine() -> None:
    """Invariant: any change to what calibration measures, how, or where, is a different key;
    problems without a canonical solution (never measured) do not count."""
    ref = references(PROBLEMS)
    base = calibration_key(ref, SETTINGS, MACHINE)
    assert base == calibration_key(ref, dict(SETTINGS), dict(MACHINE))
    assert base == calibration_key(references(PROBLEMS[:-1]), SETTINGS, MACHINE)  # T/none: no reference
    for i, field in enumerate(FIELDS):
        row = list(ROWS[0])
        row[i] += "x"
        changed = [problem(*row), *PROBLEMS[1:]]
        assert calibration_key(references(changed), SETTINGS, MACHINE) != base, field
    assert calibration_key(references(PROBLEMS[1:]), SETTINGS, MACHINE) != base  # one problem fewer
    assert calibration_key(ref, {**SETTINGS, "backend": "firejail"}, MACHINE) != base
    assert calibration_key(ref, {**SETTINGS, "timing": {"floor_s": 2.0}}, MACHINE) != base
    for name in MACHINE:
        assert calibration_key(ref, SETTINGS, {**MACHINE, name: "other"}) != base, name
    assert set(machine_fingerprint()) == set(MACHINE)


DAMAGED = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'{"version": 1, "key": "k"}',
    b'{"version": 99, "key": "k", "measured": {}, "failed": []}',
    b'{"version": 1, "key": "other", "measured": {}, "failed": []}',
    b'{"version": 1, "key": "k", "measured": {"T/0": [1.0]}, "failed": []}',
    b'{"version": 1, "key": "k", "measured": {"T/0": ["a", 1]}, "failed": []}',
    b'{"version": 1, "key": "k", "measured": {"T/0": [-1, 1]}, "failed": []}',
    b'{"version": 1, "key": "k", "measured": [], "failed": []}',
    b'{"version": 1, "key": "k", "measured": {}, "failed": [1]}',
    b"\xff\xfe\x00garbage",
]


def test_a_damaged_cache_file_is_ignored_with_a_warning(tmp_path, caplog) -> None:
    cache = CalibrationCache(tmp_path)
    for content in DAMAGED:
        cache.path("k").write_bytes(content)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sandbox.calibration"):
            assert cache.load("k") is None, content
        assert any("damaged" in r.getMessage() for r in caplog.records), content


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_in_the_cache_file_load_or_miss_never_raise(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = CalibrationCache(tmp)
        cache.path("k").write_bytes(content)
        assert cache.load("k") is None or isinstance(cache.load("k"), Calibration)


def test_an_unwritable_cache_costs_a_warning_only(tmp_path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = CalibrationCache(blocker / "engine")  # a directory under a file: cannot exist
    with caplog.at_level(logging.WARNING, logger="sandbox.calibration"):
        cache.store("k", Calibration({"T/0": (0.1, 0.1)}))
    assert cache.load("k") is None
    assert any("not written" in r.getMessage() for r in caplog.records)


class CountingBackend:
    """Passes canonical solutions in `wall_s`, fails everything else; counts canonical runs."""

    name = "counting"

    def __init__(self, wall_s: float = 0.5):
        self.wall_s = wall_s
        self.canonical_runs = 0

    async def start(self, limits: Limits, workers: int) -> None:
        pass

    async def run(self, program: str, limits: Limits, label: str = "", reserved: bool = False) -> Outcome:
        if "return x" in program:
            self.canonical_runs += 1
            return Outcome(Verdict.passed, "", self.wall_s, self.name, limits, "", cpu_s=self.wall_s)
        return Outcome(Verdict.failed, "", 0.01, self.name, limits, "", cpu_s=0.01)

    async def close(self) -> None:
        pass


def preflight(backend: CountingBackend, cache: CalibrationCache, problems=PROBLEMS, **timing) -> dict:
    """Preflight once; each problem's (wall, CPU) limits."""

    async def main() -> dict:
        async with SandboxPool(workers=2, backend=backend) as pool:
            verifier = Verifier(
                pool,
                problems,
                programs=HUMANEVAL,
                timing=Timing(runs=1, **timing),
                preflight_sample=3,
                calibration_cache=cache,
            )
            await verifier.preflight()
            return {
                p.task_id: (
                    verifier.limits_for(p.task_id).timeout_s,
                    verifier.limits_for(p.task_id).cpu_time_s,
                )
                for p in problems
            }

    return asyncio.run(main())


def test_preflight_measures_once_reuses_after_and_measures_again_when_told(tmp_path) -> None:
    """Invariant: the limits are the same whether measured or reused; a hit runs only the
    preflight sample's canonical solutions (3), a miss all of them (12)."""
    cache = CalibrationCache(tmp_path)
    first = CountingBackend()
    measured = preflight(first, cache)
    assert first.canonical_runs == 12 and measured["T/0"] == (5.0, 2.5)
    again = CountingBackend(wall_s=0.01)  # a faster run would give other limits: not measured
    assert preflight(again, cache) == measured and again.canonical_runs == 3
    told = CountingBackend(wall_s=0.01)
    assert preflight(told, cache, reuse_calibration=False)["T/0"] == (3.0, 1.0)
    assert told.canonical_runs == 12
    after = CountingBackend()
    assert preflight(after, cache)["T/0"] == (3.0, 1.0) and after.canonical_runs == 3  # refreshed


def test_another_dataset_or_timing_misses(tmp_path) -> None:
    cache = CalibrationCache(tmp_path)
    preflight(CountingBackend(), cache)
    other_dataset = CountingBackend()
    preflight(other_dataset, cache, problems=PROBLEMS[:6])
    other_timing = CountingBackend()
    preflight(other_timing, cache, factor=5.0)
    assert (other_dataset.canonical_runs, other_timing.canonical_runs) == (6, 12)
    assert len(list(tmp_path.glob("calibration-*.json"))) == 3


def test_a_damaged_cache_file_is_measured_again_and_replaced(tmp_path) -> None:
    cache = CalibrationCache(tmp_path)
    measured = preflight(CountingBackend(), cache)
    (path,) = tmp_path.glob("calibration-*.json")
    path.write_bytes(b"{ not json")
    backend = CountingBackend()
    assert preflight(backend, cache) == measured and backend.canonical_runs == 12
    reused = CountingBackend()
    assert preflight(reused, cache) == measured and reused.canonical_runs == 3
