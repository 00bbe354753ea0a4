"""One writer per run directory.

A run (`engine run`, `engine verify RUN_DIR --retry`) holds `DIR/run.lock` for its whole life:
an exclusive `flock` on the file, whose text names the holder (pid, host, start time). The
kernel drops a flock when its process dies (SIGKILL included) or the machine reboots, so a dead
holder never blocks the next run. On a shared file system whose locks do not reach across hosts,
the store's heartbeat backs the lock: a holder on another host whose heartbeat is fresh still
holds the run; one whose heartbeat is older than `STALE_AFTER_S` is gone. Readers (`status`,
`export`, `report`) take no lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from engine.errors import InputError, RunLockedError, StorageError
from engine.store import HEARTBEAT_S, Store, read_heartbeat

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
STALE_AFTER_S = 5 * HEARTBEAT_S  # a heartbeat this old on another host: its writer is gone
HOLDER_WAIT_S = 3.0  # a second writer waits this long for a new holder to name itself


class RunLock:
    """Held from `acquire` to `release`; the file stays (empty when free), never unlinked, so two
    processes can never lock two different files of the same name."""

    def __init__(self, fd: int, path: Path):
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, run_dir: str | Path, now: float | None = None) -> RunLock:
        """Lock `run_dir` (created if needed) or raise RunLockedError naming the holder."""
        directory = Path(run_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create output directory {directory}: {exc.strerror}") from exc
        try:
            fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise RunLockedError(f"cannot lock {directory}: {exc.strerror}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLockedError(_in_use(directory, _wait_for_holder(fd))) from None
            holder = _read_holder(fd)
            if holder and _alive_elsewhere(
                holder, read_heartbeat(directory), time.time() if now is None else now
            ):
                raise RunLockedError(_in_use(directory, holder))
            _write_holder(fd)
        except BaseException:
            os.close(fd)  # also drops the flock
            raise
        return cls(fd, directory / LOCK_NAME)

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            os.ftruncate(self._fd, 0)  # free: nobody named in it any more
        except OSError:
            pass  # the flock still goes with the close
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


async def keep_heartbeat(store: Store, live: dict | None = None) -> None:
    """While a lock is held: the heartbeat that backs it, with `live` figures for `engine status`
    (`live["servers"]`: a callable giving (servers up, servers))."""
    started = time.time()  # `engine status` counts "no progress" from here before the first verdict
    while True:
        servers = (live or {}).get("servers")
        up, total = servers() if servers else (None, None)
        try:
            store.heartbeat(started=started, servers_up=up, servers=total)
        except StorageError as exc:  # a full disk is the sweep's to report; keep trying meanwhile
            log.warning("cannot write the heartbeat: %s", exc)
        await asyncio.sleep(HEARTBEAT_S)


def _alive_elsewhere(holder: dict, beat: dict | None, now: float) -> bool:
    """Whether a holder whose flock we could take anyway still runs: only possible on another
    host (a shared file system without shared locks), and only while its heartbeat is fresh."""
    if holder.get("host") == socket.gethostname():
        return False  # same kernel: the flock was free, so its holder is dead
    if not beat or (beat.get("host"), beat.get("pid")) != (holder.get("host"), holder.get("pid")):
        # No heartbeat of its own yet: it may be starting; trust the lock file's own age.
        return now - float(holder.get("started", 0)) < STALE_AFTER_S
    return now - float(beat.get("time", 0)) < STALE_AFTER_S


def _read_holder(fd: int) -> dict | None:
    try:
        text = os.pread(fd, 4096, 0)
        holder = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _wait_for_holder(fd: int, wait_s: float = HOLDER_WAIT_S) -> dict | None:
    """The holder's record; a holder that has just taken the flock writes it a moment later."""
    deadline = time.monotonic() + wait_s
    while (holder := _read_holder(fd)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return holder


def _write_holder(fd: int) -> None:
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, text + b"\n", 0)
    os.fsync(fd)


def _in_use(directory: Path, holder: dict | None) -> str:
    if not holder:
        return f"{directory} is in use by another engine process; wait for it to end or stop it"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0))))
    return (
        f"{directory} is in use by engine pid {holder.get('pid')} on host {holder.get('host')} (since {since});"
        " wait for it to end or stop it"
    )
