"""The jail's cgroup CPU clock (cpuacct.usage): it counts every process of the jail, also orphans a
program left burning CPU, which the server's wait4 figure misses (worker.py's docstring)."""

from __future__ import annotations

import contextlib
import os

from sandbox.cgroups import JailCgroup


class CpuClock:
    """The jail's cgroup CPU clock, read through a descriptor kept open (one pread per reply)."""

    def __init__(self, cgroup: JailCgroup | None):
        path = cgroup.paths.get("cpuacct") if cgroup is not None else None
        self._path = str(path / "cpuacct.usage") if path is not None else None
        self._fd: int | None = None

    def read(self) -> float | None:
        if self._path is None:
            return None
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            return int(os.pread(self._fd, 32, 0)) / 1e9
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
