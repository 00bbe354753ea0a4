"""The nsjail backend: one fresh jail per program.

One run: spawn nsjail with three private pipes (merged stdout+stderr, the harness's status fd,
nsjail's own log), send the nonce and the program on stdin, wait for the harness's "ready" under
a generous start-up deadline, then give the program `timeout_s` of wall clock measured by our own
timer. The facts gathered go to `sandbox.verdicts.decide`.

Killing a jail: SIGTERM to nsjail, which then SIGKILLs the jailed process (pid 1 of the jail's
pid namespace, so every descendant goes with it), reaps it, removes its cgroup and exits. The
program cannot block this: nsjail is outside its pid namespace. SIGKILL straight to nsjail would
kill the jail too (nsjail sets PR_SET_PDEATHSIG), but would orphan the jailed process for the
host's init to reap (a zombie leak where the engine is a container's pid 1) and leave nsjail's
cgroup behind; it is only the escalation, KILL_GRACE_S later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from engine.errors import SandboxError
from sandbox import cgroups
from sandbox.capture import PipeReader, TailBuffer
from sandbox.limits import Limits
from sandbox.nsjail import JailLayout, discover_layout, nsjail_command, parse_nsjail_log
from sandbox.protocol import StatusParser
from sandbox.verdicts import KillReason, Observation, Outcome, Verdict, decide

log = logging.getLogger(__name__)

NONCE_BYTES = 16  # 32 hex chars, as the harness expects
LOG_TAIL_BYTES = 16 * 1024
DRAIN_TIMEOUT_S = 2.0  # after nsjail exits, the pipes' last bytes arrive at once; this is slack
KILL_GRACE_S = 1.0  # nsjail needs milliseconds to kill and reap a jail after SIGTERM
HARNESS_SOURCE = (Path(__file__).parent / "harness.py").read_text(encoding="utf-8")
SELF_TEST_PROGRAM = "def check(candidate):\n    assert candidate(2) == 4\n\ncheck(lambda x: x * 2)\n"
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_./:=-]")


class NsjailBackend:
    """Runs each program in a fresh nsjail. Holds no global state: everything it creates on the
    host (a staging dir, a memory cgroup) belongs to one instance and goes away in `close()`."""

    name = "nsjail"

    def __init__(self, *, startup_timeout_s: float = 10.0, nsjail_path: str | None = None,
                 memory_cgroup: bool = True):  # fmt: skip
        self.startup_timeout_s = startup_timeout_s
        self._nsjail_path = nsjail_path
        self._want_memory_cgroup = memory_cgroup
        self._layout: JailLayout | None = None
        self._stage_dir: str | None = None
        self._cgroup: cgroups.MemoryCgroup | None = None
        self._running: set[_Jail] = set()

    @property
    def layout(self) -> JailLayout | None:
        return self._layout

    async def start(self, limits: Limits) -> None:
        """Prepare the host side and prove a jail can run Python; SandboxError if it cannot.
        Runs nothing untrusted: only a fixed self-test program."""
        try:
            self._layout = self._prepare_host()
            outcome = await self.run(SELF_TEST_PROGRAM, limits, label="self-test")
        except (OSError, ValueError) as exc:
            await self.close()
            raise SandboxError(f"sandbox unavailable: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        if outcome.verdict is not Verdict.passed:
            await self.close()
            said = outcome.output.strip().splitlines()[-1:]  # e.g. unshare's own complaint
            raise SandboxError(f"sandbox self-test failed: {outcome.verdict.value}: {outcome.detail}"
                               + (f": {said[0][:200]}" if said else ""))  # fmt: skip
        log.info("sandbox ready: nsjail %s, python %s, memory cgroup %s", self._layout.nsjail,
                 self._layout.python, self._layout.memory_cgroup_parent or "off")  # fmt: skip

    def _prepare_host(self) -> JailLayout:
        # Under /tmp whatever TMPDIR says: every directory above it must be traversable by the
        # jail's unprivileged user, for nsjail to bind the staged prefix from it.
        self._stage_dir = tempfile.mkdtemp(prefix=f"engine-sandbox-{os.getpid()}-", dir="/tmp")
        for sub in ("python", "empty"):
            os.mkdir(os.path.join(self._stage_dir, sub), 0o755)
        os.chmod(self._stage_dir, 0o755)
        if self._want_memory_cgroup:
            self._cgroup = cgroups.MemoryCgroup.create()
        return discover_layout(
            self._stage_dir,
            nsjail=self._nsjail_path,
            memory_cgroup_parent=self._cgroup.nsjail_parent if self._cgroup else None,
            memsw=self._cgroup.memsw if self._cgroup else False,
        )

    async def run(self, program: str, limits: Limits, label: str = "") -> Outcome:
        if self._layout is None:
            raise RuntimeError("NsjailBackend.run() before start()")
        jail = _Jail(self._layout, limits, program, _safe_label(label), self.startup_timeout_s)
        self._running.add(jail)
        try:
            outcome = await jail.run()
        finally:
            self._running.discard(jail)
            if self._cgroup is not None and jail.killed_by is not None:
                self._cgroup.sweep()  # in case nsjail needed the SIGKILL and left its cgroup
        log.debug("%.3fs %s %s: %s", outcome.wall_s, label or "-", outcome.verdict.value, outcome.detail)
        return outcome

    async def close(self) -> None:
        """Kill every running jail, wait for them, remove what start() created."""
        for jail in list(self._running):
            jail.kill(KillReason.closed)
        for jail in list(self._running):
            await jail.wait_exit()
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None
        if self._stage_dir is not None:
            shutil.rmtree(self._stage_dir, ignore_errors=True)
            self._stage_dir = None
        self._layout = None


class _Jail:
    """One program in one nsjail, from spawn to Outcome."""

    def __init__(self, layout: JailLayout, limits: Limits, program: str, label: str, startup_timeout_s: float):
        self.layout = layout
        self.limits = limits
        self.program = program
        self.label = label
        self.startup_timeout_s = startup_timeout_s
        self.nonce = secrets.token_hex(NONCE_BYTES)
        self.status = StatusParser(self.nonce)
        self.output = TailBuffer(limits.max_output_bytes)
        self.log = TailBuffer(LOG_TAIL_BYTES)
        self.killed_by: KillReason | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._exited: asyncio.Event | None = None

    def kill(self, reason: KillReason) -> None:
        """Ask nsjail to kill and reap the jail; SIGKILL it if it has not exited KILL_GRACE_S later."""
        if self.killed_by is None:
            self.killed_by = reason
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            asyncio.get_running_loop().call_later(KILL_GRACE_S, self._force_kill)

    def _force_kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            log.warning("sandbox %s: nsjail ignored SIGTERM for %.1f s; SIGKILL", self.label or "-", KILL_GRACE_S)
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def wait_exit(self) -> None:
        if self._exited is not None:
            await self._exited.wait()

    async def run(self) -> Outcome:
        started = time.monotonic()
        self._exited = asyncio.Event()
        ready = asyncio.Event()

        def on_status(data: bytes) -> None:
            self.status.feed(data)
            if self.status.ready:
                ready.set()

        out_r, out_w = os.pipe()
        status_r, status_w = os.pipe()
        log_r, log_w = os.pipe()
        readers = [PipeReader(out_r, self.output.feed), PipeReader(status_r, on_status),
                   PipeReader(log_r, self.log.feed)]  # fmt: skip
        argv = nsjail_command(self.layout, self.limits, harness_source=HARNESS_SOURCE, status_fd=status_w,
                              log_fd=log_w, label=self.label, startup_timeout_s=self.startup_timeout_s)  # fmt: skip
        try:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.PIPE, stdout=out_w, stderr=out_w,
                    pass_fds=(status_w, log_w), env={}, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                return self._outcome(Observation(sandbox_fault=f"cannot start nsjail: {exc}"), started)
            finally:
                for fd in (out_w, status_w, log_w):
                    os.close(fd)
            if self.killed_by is not None:  # close() came while we were spawning
                self.kill(self.killed_by)
            for reader in readers:
                await reader.start()
            return await self._supervise(readers, ready, started)
        finally:
            if self._proc is not None:
                if self._proc.returncode is None:
                    self.kill(KillReason.closed)  # cancelled: never leave a jail behind
                    await self._proc.wait()
                    await _drain(readers)
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
            for reader in readers:
                reader.close()
            self._exited.set()

    async def _supervise(self, readers: list[PipeReader], ready: asyncio.Event, started: float) -> Outcome:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        feeder = asyncio.ensure_future(_feed(proc.stdin, self.nonce, self.program))
        exited = asyncio.ensure_future(proc.wait())
        said_ready = asyncio.ensure_future(ready.wait())
        try:
            await asyncio.wait({exited, said_ready}, timeout=self.startup_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if not ready.is_set() and not exited.done():
                self.kill(KillReason.startup)
            elif ready.is_set():
                # The program's own clock starts now: jail and interpreter start-up are not its time.
                done, _ = await asyncio.wait({exited}, timeout=self.limits.timeout_s)
                if not done:
                    self.kill(KillReason.timeout)
            await exited
            if not await _drain(readers):
                log.warning("sandbox %s: a pipe stayed open after nsjail exited", self.label or "-")
        finally:
            for task in (feeder, said_ready):
                task.cancel()
        return self._outcome(self._observe(proc.returncode), started)

    def _observe(self, nsjail_status: int | None) -> Observation:
        report = parse_nsjail_log(self.log.text())
        fault = report.fault()
        fault = f"nsjail: {fault}" if fault and not self.status.ready else None
        exit_status = report.exit_status
        if exit_status is None and report.signal is None and nsjail_status is not None and nsjail_status >= 0:
            exit_status = nsjail_status  # nsjail passes the jailed process's status through
        return Observation(
            ready=self.status.ready,
            passed_record=self.status.passed,
            forged_pass=self.status.forged_pass,
            failure=self.status.failure,
            killed_by=self.killed_by,
            exit_status=exit_status,
            signal=report.signal,
            sandbox_fault=fault,
            jail_time_limit=report.time_limit_hit,
            memory_cap=self.layout.memory_cgroup_parent is not None,
            output_memory_error="MemoryError" in self.output.text(),
            timeout_s=self.limits.timeout_s,
            startup_timeout_s=self.startup_timeout_s,
        )

    def _outcome(self, observation: Observation, started: float) -> Outcome:
        verdict, detail = decide(observation)
        return Outcome(
            verdict=verdict,
            detail=detail,
            wall_s=round(time.monotonic() - started, 6),
            backend=NsjailBackend.name,
            limits=self.limits,
            output=self.output.text(),
        )


async def _drain(readers: list[PipeReader]) -> bool:
    """Wait for EOF on every pipe: the jail's processes hold them until they are dead. (After a
    SIGTERM nsjail reaps its jail before it exits; after a SIGKILL it cannot, and the jail dies
    a moment later, from nsjail's PR_SET_PDEATHSIG.)"""
    return all(await asyncio.gather(*(reader.wait_eof(DRAIN_TIMEOUT_S) for reader in readers)))


async def _feed(stdin: asyncio.StreamWriter, nonce: str, program: str) -> None:
    """Nonce line, then the program; a harness that died early just closes the pipe on us."""
    try:
        stdin.write(nonce.encode("ascii") + b"\n" + program.encode("utf-8", errors="surrogatepass"))
        await stdin.drain()
        stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass


def _safe_label(label: str) -> str:
    """A label shown in `ps` and logs: task ids are trusted, but keep argv tidy anyway."""
    return _LABEL_UNSAFE.sub("_", label)[:80]
