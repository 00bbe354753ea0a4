"""A memory cgroup (v1) for one pool's jails: caps the resident memory of a whole jail.

RLIMIT_AS bounds each process; without a cgroup a jail of `max_processes` processes could still
use `max_processes * memory_mb` (32 GB with the defaults). nsjail puts each jail in its own child
cgroup (NSJAIL.<pid>) of a parent we name; that parent is created under the engine's own memory
cgroup, so the jails stay inside whatever limits the engine itself runs under.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MEMORY_MOUNT = Path("/sys/fs/cgroup/memory")


@dataclass(frozen=True, slots=True)
class MemoryCgroup:
    path: Path  # absolute, under MEMORY_MOUNT
    memsw: bool  # memory+swap can be limited too

    @property
    def nsjail_parent(self) -> str:
        """The parent for nsjail's --cgroup_mem_parent (relative to the mount)."""
        return str(self.path.relative_to(MEMORY_MOUNT))

    @classmethod
    def create(cls, proc_cgroup: Path = Path("/proc/self/cgroup")) -> MemoryCgroup | None:
        """A fresh cgroup under our own; None (and a warning) where cgroup v1 memory is unusable."""
        own = own_memory_cgroup(proc_cgroup.read_text() if proc_cgroup.exists() else "")
        if own is None or not (MEMORY_MOUNT / "memory.limit_in_bytes").exists():
            log.warning("no cgroup v1 memory controller: a jail's memory is limited per process only")
            return None
        path = MEMORY_MOUNT / own.lstrip("/") / f"engine-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except OSError as exc:
            log.warning("cannot create memory cgroup %s (%s): a jail's memory is limited per process only",
                        path, exc.strerror)  # fmt: skip
            return None
        return cls(path=path, memsw=(path / "memory.memsw.limit_in_bytes").exists())

    def sweep(self) -> None:
        """Remove the empty per-jail cgroups a killed nsjail left behind (live ones are busy)."""
        for child in self.path.glob("NSJAIL.*"):
            try:
                child.rmdir()
            except OSError:
                pass

    def remove(self) -> None:
        self.sweep()
        try:
            self.path.rmdir()
        except OSError as exc:
            log.warning("cannot remove memory cgroup %s: %s", self.path, exc.strerror)


def own_memory_cgroup(proc_cgroup_text: str) -> str | None:
    """The memory controller's path in /proc/self/cgroup's v1 format ("4:memory:/a/b")."""
    for line in proc_cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and "memory" in parts[1].split(","):
            return parts[2]
    return None
