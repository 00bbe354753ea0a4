"""cgroups (v1) for the worker jails: a fair, bounded CPU share and a memory cap per jail, and
the CPU time a jail used, counting every process in it.

A jail runs one sample at a time, so a jail's cgroup counts a sample and everything it spawns
(setsid()'d daemons included, which wait4 never sees). Per jail:

- cpu: equal `cpu.shares`, and a CFS quota of one core: a sample that forks 30 busy processes
  gets one jail's share of the machine, not 30 processes' worth, and never more than one core.
- cpuacct: `cpuacct.usage`, read by the engine before and after each sample.
- memory: the resident memory of the whole jail (RLIMIT_AS bounds each process only; memfd,
  tmpfs and page cache are not mapped at all), the OOM killer acting inside the jail only.

One pool's cgroups live under a parent per controller, `engine-sandbox-<pid>-<hex>`, created
under the engine's own cgroup of that controller (so the jails stay inside whatever limits the
engine itself runs under). A reserved jail (the one that confirms load-sensitive verdicts) sits
beside the parent in the cpu hierarchy, with a much larger weight: while it runs one sample, that
sample gets a core whatever else the machine does. A jail joins its cgroups through a tiny shell
wrapper before it starts (`join_command`), so every process of it is inside from the first.

`sweep_leftovers` removes the cgroups and /tmp directories of engine processes that no longer
exist (a killed run), never those of a live one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "cpuacct", "memory")
PREFIX = "engine-sandbox-"
LEFTOVER = re.compile(rf"^{PREFIX}(\d+)-")
JAIL_SHARES = 1024  # one busy process's weight: a jail weighs what one sample process weighed before
RESERVED_SHARES = 8 * 1024  # the reserved jail wins against ~8 busy processes for its one core
LAST_SHARES = 64  # a jail running a program submitted `last` (a loop, mostly) yields to the others
# Runs first in a worker's process: joins each cgroup listed before "--", then execs the jail.
JOIN_SCRIPT = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


@dataclass(frozen=True, slots=True)
class JailCgroup:
    """One jail's directory in each controller it has."""

    paths: dict[str, Path]

    def join_command(self, sh: str) -> list[str]:
        procs = [str(path / "cgroup.procs") for path in self.paths.values()]
        return [sh, "-c", JOIN_SCRIPT, "engine-sandbox-join", *procs, "--"]

    def cpu_usage_s(self) -> float | None:
        """CPU time (user + system) every process of the jail has used so far."""
        path = self.paths.get("cpuacct")
        if path is None:
            return None
        try:
            return int((path / "cpuacct.usage").read_bytes()) / 1e9
        except (OSError, ValueError):
            return None

    def weigh(self, shares: int) -> None:
        """Set the jail's CPU weight (`cpu.shares`); a jail without a cpu cgroup ignores it."""
        path = self.paths.get("cpu")
        if path is not None:
            with contextlib.suppress(OSError):  # a jail being torn down: nothing left to weigh
                _write(path / "cpu.shares", shares)

    @property
    def memory_cap(self) -> bool:
        return "memory" in self.paths

    def remove(self, attempts: int = 20) -> None:
        """rmdir each directory (kill what is left in it first: only our own jail's processes)."""
        for path in set(self.paths.values()):
            _remove_cgroup(path, attempts)


class PoolCgroups:
    """The parents of one pool's jail cgroups; `jail()` makes one jail's."""

    def __init__(self, parents: dict[str, Path], memsw: bool):
        self.parents = parents
        self.memsw = memsw

    @classmethod
    def create(cls, workers: int, proc_cgroup: Path = Path("/proc/self/cgroup")) -> PoolCgroups | None:
        """Parents in every usable controller; None (and a warning) where none is usable. The
        cpu parent weighs what `workers` busy processes weighed without cgroups."""
        own = own_cgroups(proc_cgroup.read_text() if proc_cgroup.exists() else "")
        name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        parents: dict[str, Path] = {}
        made: dict[Path, Path] = {}  # mount (resolved) -> parent: co-mounted controllers share one
        for controller in CONTROLLERS:
            mount = CGROUP_ROOT / controller
            if controller not in own or not mount.is_dir():
                continue
            if mount.resolve() not in made:
                path = mount / own[controller].lstrip("/") / name
                try:
                    path.mkdir()
                except OSError as exc:
                    log.warning("cannot create %s cgroup %s (%s)", controller, path, exc.strerror)
                    continue
                made[mount.resolve()] = path
            parents[controller] = made[mount.resolve()]
        if "cpu" in parents:
            _write(parents["cpu"] / "cpu.shares", JAIL_SHARES * workers)
        missing = [c for c in CONTROLLERS if c not in parents]
        if missing:
            log.warning("no cgroup v1 %s controller usable: %s", "/".join(missing), _WHAT_IS_LOST)
        if not parents:
            return None
        memsw = "memory" in parents and (parents["memory"] / "memory.memsw.limit_in_bytes").exists()
        return cls(parents, memsw)

    def jail(self, label: str, memory_bytes: int, *, reserved: bool = False) -> JailCgroup:
        """A jail's cgroups, limits set; OSError if they cannot be made."""
        paths: dict[str, Path] = {}
        made: dict[Path, Path] = {}  # parent -> this jail's directory under it
        try:
            for controller, parent in self.parents.items():
                if parent not in made:
                    # The reserved jail weighs against the whole machine, not against its siblings.
                    beside = reserved and controller == "cpu"
                    path = parent.parent / f"{parent.name}-{label}" if beside else parent / label
                    path.mkdir()
                    made[parent] = path
                paths[controller] = made[parent]
                self._limit(controller, made[parent], memory_bytes, reserved)
        except OSError:
            JailCgroup(paths).remove(attempts=1)
            raise
        return JailCgroup(paths)

    def _limit(self, controller: str, path: Path, memory_bytes: int, reserved: bool) -> None:
        if controller == "cpu":
            _write(path / "cpu.shares", RESERVED_SHARES if reserved else JAIL_SHARES)
            _write(path / "cpu.cfs_quota_us", int((path / "cpu.cfs_period_us").read_text()))  # one core
        elif controller == "memory":
            _write(path / "memory.limit_in_bytes", memory_bytes)
            if self.memsw:
                _write(path / "memory.memsw.limit_in_bytes", memory_bytes)

    def remove(self) -> None:
        """The parents, with whatever jail cgroups are still in them (and the reserved ones)."""
        for path in set(self.parents.values()):
            jails = [child for child in path.iterdir() if child.is_dir()]
            jails += list(path.parent.glob(f"{path.name}-*"))
            for jail in jails:
                _remove_cgroup(jail, 20)
            _remove_cgroup(path, 20)


_WHAT_IS_LOST = (
    "jails share the CPU per process, a sample's CPU time counts only what wait4 sees, "
    "and memory is limited per process only"
)


def own_cgroups(proc_cgroup_text: str) -> dict[str, str]:
    """{controller: path} from /proc/self/cgroup's v1 lines ("4:memory:/a/b", "3:cpu,cpuacct:/")."""
    own: dict[str, str] = {}
    for line in proc_cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                if controller:
                    own[controller] = parts[2]
    return own


def own_memory_cgroup(proc_cgroup_text: str) -> str | None:
    return own_cgroups(proc_cgroup_text).get("memory")


# -- leftovers of killed runs --------------------------------------------------------------------


def sweep_leftovers(
    tmp_dirs: tuple[str, ...] = ("/tmp",), cgroup_root: Path = CGROUP_ROOT, depth: int = 3
) -> list[Path]:
    """Remove what engine processes that no longer exist left behind: their staging directories
    (`/tmp/engine-sandbox-<pid>-*`) and cgroups (`engine-sandbox-<pid>-*`, searched `depth`
    levels deep in each controller, as a killed engine may have lived in another cgroup than
    ours). What belongs to a live process is left alone. Returns what was removed."""
    removed: list[Path] = []
    for tmp in dict.fromkeys((*tmp_dirs, tempfile.gettempdir())):
        for path in Path(tmp).glob(f"{PREFIX}*"):
            if path.is_dir() and not path.is_symlink() and _owner_gone(path.name):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    for controller in CONTROLLERS:
        mount = cgroup_root / controller
        for level in range(depth):
            for path in mount.glob("/".join(["*"] * level + [f"{PREFIX}*"])):
                if path.is_dir() and _owner_gone(path.name):
                    for child in sorted(path.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                        _remove_cgroup(child, 5)
                    if not path.exists():
                        removed.append(path)
    if removed:
        log.info("removed %d leftovers of killed runs (%s ...)", len(removed), removed[0])
    return removed


def _owner_gone(name: str) -> bool:
    match = LEFTOVER.match(name)
    if match is None:
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _remove_cgroup(path: Path, attempts: int) -> None:
    """rmdir a cgroup; its processes (a jail that is dying, or orphaned by a killed run) are
    SIGKILLed first, and the rmdir retried while they exit."""
    for attempt in range(attempts):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            for pid in _procs(path):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if attempt + 1 < attempts:
                time.sleep(0.05)
    log.warning("cannot remove cgroup %s (still busy)", path)


def _procs(path: Path) -> list[int]:
    try:
        return [int(line) for line in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _write(path: Path, value: int) -> None:
    path.write_text(str(value))
