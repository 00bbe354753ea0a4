"""One worker: a jail with the fork-server in it (sandbox/forkserver/server.py), driven over its
stdin/stdout. The engine-side half of the protocol (see server.py's docstring) lives here.

Pipelined: up to `depth` programs are sent ahead, so the server has its next programs in its
stdin before it finishes the current one and never waits for the engine. It runs them one at a
time, in the order sent, and answers one line each, in that order; each line is matched to the
oldest program still waiting for one as soon as it is read (in the event loop's I/O callback,
not a task's next turn: so that everything read in one wake-up is handled before the loop
pauses, pacing.py).

The server enforces each program's wall-clock limit itself; the worker keeps a backstop
(`timeout_s + BACKSTOP_S`, armed when the program reaches the head of the line) after which it
kills the whole jail. `run()` says whether the worker may serve again: not after any anomaly (a
reply missing or malformed, the backstop, a program that never said "ready", a cancelled call);
ForkServerBackend then recycles it. When a jail dies, every program sent to it and not yet
answered gets an outcome (an infrastructure error, which the verifier retries): exactly one each.

CPU time: the server's wait4 figure (the program's process and those it waited for), and for a
program that ran at least CGROUP_CPU_MIN_WALL_S, the jail's cgroup clock if that says more: it
also counts orphans the program left burning CPU (they end with its pid namespace, unwaited).
The clock is read as each reply is handled, so with programs pipelined its reading is off by the
engine's lag in handling replies (milliseconds, and a late reply can charge the next program's
first milliseconds to this one): negligible against a program that ran that long, which is
where it decides something (a wall-clock timeout is load-sensitive only if CPU stayed under its
limit), and never used for short programs (canonical solutions, whose CPU calibrates limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.capture import TailBuffer
from sandbox.cgroups import JailCgroup
from sandbox.errors import SandboxError
from sandbox.forkserver.blobs import DEFAULT_BUDGET_BYTES, HeldBlobs, digest_of
from sandbox.forkserver.cpu_clock import CpuClock
from sandbox.forkserver.frames import in_parentheses, last_words, number, parse_reply, request_frame
from sandbox.limits import Limits
from sandbox.protocol import StatusParser
from sandbox.verdicts import KillReason, Observation, Outcome, decide, load_sensitive

log = logging.getLogger(__name__)
Answer = Callable[[Outcome, bool], object]  # an outcome, and whether the worker may serve again

# The fork-server's source: each file uses the names of those before it (server.py's docstring).
SERVER_FILES = ("guards.py", "child.py", "pipes.py", "server.py")
SERVER_SOURCE = b"".join((Path(__file__).parent / name).read_bytes() for name in SERVER_FILES)
BACKSTOP_S = 5.0  # after the program's own limit: the server should have answered long before
KILL_GRACE_S = 1.0  # SIGTERM to the jail, then SIGKILL this much later
STDERR_TAIL_BYTES = 16 * 1024
REPLY_LIMIT = 64 * 1024 * 1024  # a longer line is not a reply: the server is not keeping the protocol
CGROUP_CPU_MIN_WALL_S = 0.5  # see the module's docstring
PIPELINE_DEPTH = 6  # programs a jail holds at once: the one it runs and those queued (pacing.py)


@dataclass(slots=True, eq=False)
class _Sent:
    """A program sent to the server and not answered yet."""

    limits: Limits
    done: Answer  # called once, with the outcome and whether the worker may serve again
    started: float = 0.0  # monotonic, when it reached the head of the line
    cpu_before: float | None = None  # the jail's CPU clock then
    cpu_after: float | None = None
    backstop: asyncio.TimerHandle | None = None


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """The jail process's protocol: once `on_stdout` is set, the server's output goes to it as it
    is read (None: the end), instead of to the stdout stream."""

    on_stdout: Callable[[bytes | None], None] | None = None

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if fd == 1 and self.on_stdout is not None:
            self.on_stdout(data if isinstance(data, bytes) else data.encode())  # (always bytes here)
        else:
            super().pipe_data_received(fd, data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        super().pipe_connection_lost(fd, exc)
        if fd == 1 and self.on_stdout is not None:
            self.on_stdout(None)


class BrokenWorker:
    """Stands in for a worker that could not be restarted: every program gets an infrastructure error."""

    served = 0
    depth = 1
    in_flight = 0
    head_started = 0.0

    def __init__(self, fault: str):
        self.fault = fault

    def submit(self, program: str, limits: Limits, data: bytes | None, done: Answer) -> None:
        verdict, detail = decide(Observation(sandbox_fault=self.fault))
        outcome = Outcome(verdict, detail, 0.0, "broken", limits, "")
        asyncio.get_running_loop().call_soon(done, outcome, True)  # never from inside submit()

    def kill(self, reason: KillReason) -> None:
        pass  # nothing runs


class Worker:
    """One jail with a fork-server in it."""

    def __init__(
        self,
        argv: list[str],
        label: str,
        cgroup: JailCgroup | None,
        backend: str,
        reserved: bool = False,
        depth: int = PIPELINE_DEPTH,
        data_budget: int = DEFAULT_BUDGET_BYTES,
    ):
        self.backend = backend
        self.depth = depth
        self.argv = argv
        self.label = label
        self.cgroup = cgroup
        self.memory_cap = cgroup is not None and cgroup.memory_cap
        self.reserved = reserved
        self.proc: asyncio.subprocess.Process | None = None
        self.features: dict = {}
        self.served = 0
        self.ready = False  # said hello: serving, not starting
        self.healthy = True
        self.stderr = TailBuffer(STDERR_TAIL_BYTES)
        self._stderr_task: asyncio.Task | None = None
        self._reading = False  # its replies are being read: a program sent now will be answered
        self._replies_ended: asyncio.Future[None] | None = None  # set once every program is answered
        self._partial = bytearray()  # the start of a reply line not read whole yet
        self._killed_by: KillReason | None = None
        self._sent: deque[_Sent] = deque()
        self._cpu_clock = CpuClock(cgroup)
        self.blobs = HeldBlobs(data_budget)  # the problem data its server holds (blobs.py)
        self.bytes_written = 0  # to the server, frames included (bench/problem_data.py)

    @property
    def busy(self) -> bool:
        return bool(self._sent)

    @property
    def in_flight(self) -> int:
        return len(self._sent)

    @property
    def head_started(self) -> float:
        return self._sent[0].started if self._sent else 0.0

    async def start(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _Protocol(limit=REPLY_LIMIT, loop=loop),
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={},
                start_new_session=True,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start the sandbox worker: {exc}") from exc
        self.proc = asyncio.subprocess.Process(transport, protocol, loop)
        self._stderr_task = loop.create_task(self._read_stderr())
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with contextlib.suppress(ConnectionError, RuntimeError):  # died at once (uvloop: a closed transport)
            self.proc.stdin.write(
                len(SERVER_SOURCE).to_bytes(4, "big") + SERVER_SOURCE
            )  # its stderr says why
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        except TimeoutError:
            line = b""
        hello = parse_reply(line)
        if hello is None or hello.get("event") != "hello" or hello.get("fault"):
            await self.kill_and_wait()
            why = (hello or {}).get("fault") or last_words(self.stderr.text()) or "no answer"
            raise SandboxError(f"sandbox worker did not start: {why}")
        self.features = {k: hello[k] for k in ("pidns", "mountns", "proc", "seccomp") if k in hello}
        self.features["python"] = hello.get("python")
        self.ready = True
        # From now on the replies are handled as they are read (the server says nothing between
        # its hello and the first reply, so the stream holds nothing more).
        self._reading = True
        self._replies_ended = loop.create_future()
        protocol.on_stdout = self._on_stdout
        if self.proc.stdout.at_eof():  # it ended right after its hello
            self._end_replies()

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(1 << 16):
            self.stderr.feed(chunk)

    def submit(self, program: str, limits: Limits, data: bytes | None, done: Answer) -> None:
        """Send a program; `done(outcome, may_serve_again)` is called once, when the server
        answers or the jail ends, never from inside this call. Up to `depth` programs at once.
        `data`: the program's problem data, sent only if the jail does not hold it already.
        No awaiting here: the pipe buffers at most `depth` requests (and their blobs)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.served += 1
        sent = _Sent(limits, done)
        if not self._reading:  # the jail is gone already
            sent.started = time.monotonic()
            asyncio.get_running_loop().call_soon(self._answer, sent, b"")
            return
        self._sent.append(sent)
        if len(self._sent) == 1:
            self._start_head()
        frames = self._frames(program, limits, data)
        self.bytes_written += len(frames)
        try:
            self.proc.stdin.write(frames)
        except (ConnectionError, RuntimeError) as exc:  # a broken pipe (uvloop: a closed transport)
            log.warning("sandbox worker %s: %s", self.label, exc)
            self._terminate()  # its end answers every program sent to it (the reader's EOF)

    async def run(self, program: str, limits: Limits, data: bytes | None = None) -> tuple[Outcome, bool]:
        """`submit` awaited. Cancelling it kills the jail: a program is never left running."""
        answer: asyncio.Future[tuple[Outcome, bool]] = asyncio.get_running_loop().create_future()

        def done(outcome: Outcome, healthy: bool) -> None:
            if not answer.done():
                answer.set_result((outcome, healthy))

        self.submit(program, limits, data, done)
        try:
            return await answer
        except BaseException:
            self.kill(KillReason.closed)
            raise

    def _frames(self, program: str, limits: Limits, data: bytes | None) -> bytes:
        """The request, and the blob's frame if the jail lacks it (the mirror changes here, in
        the order the server reads)."""
        if data is None:
            return request_frame(program, limits)
        digest = digest_of(data)
        admission = self.blobs.admit(digest, len(data))
        extra: dict[str, Any] = {"data": digest, "data_follows": admission.send}
        if admission.evict:
            extra["evict"] = list(admission.evict)
        frames = request_frame(program, limits, extra)
        return frames + len(data).to_bytes(4, "big") + data if admission.send else frames

    def _start_head(self) -> None:
        """The oldest unanswered program is the one the server runs now: time it from here."""
        head = self._sent[0]
        head.started = time.monotonic()
        head.cpu_before = self._cpu_clock.read() if head.cpu_before is None else head.cpu_before
        timeout = head.limits.timeout_s + BACKSTOP_S
        head.backstop = asyncio.get_running_loop().call_later(timeout, self.kill, KillReason.unresponsive)

    def _on_stdout(self, data: bytes | None) -> None:
        """The server's output as it is read: one line per program, in the order sent; at its
        end (the jail died or was killed), an empty reply for every program still waiting."""
        if not self._reading:
            return
        if data is None:
            return self._end_replies()
        partial = self._partial
        partial += data
        start = 0
        while (end := partial.find(b"\n", start)) >= 0:
            line = bytes(partial[start : end + 1])
            start = end + 1
            if not self._sent:  # a line nobody asked for: the server is not keeping the protocol
                log.warning("sandbox worker %s: a reply to no program", self.label)
                return self._end_replies()
            head = self._sent.popleft()
            self._finish(head)
            if self._sent:  # the next one runs now; answered after, so a new submit() finds it so
                self._sent[0].cpu_before = head.cpu_after
                self._start_head()
            self._answer(head, line)
            if not self._reading:  # answering it ended this worker's replies
                return
        del partial[:start]
        if len(partial) > REPLY_LIMIT:
            log.warning("sandbox worker %s: a reply longer than %d bytes", self.label, REPLY_LIMIT)
            self._end_replies()

    def _end_replies(self) -> None:
        """No more replies will be read: every program still waiting gets an empty one."""
        if not self._reading:
            return
        self._reading = False
        self._partial.clear()
        while self._sent:
            head = self._sent.popleft()
            self._finish(head)
            self._answer(head, b"")
        if self._replies_ended is not None and not self._replies_ended.done():
            self._replies_ended.set_result(None)

    def _finish(self, sent: _Sent) -> None:
        if sent.backstop is not None:
            sent.backstop.cancel()
        sent.cpu_after = self._cpu_clock.read()
        sent.started = sent.started or time.monotonic()

    def _answer(self, sent: _Sent, line: bytes) -> None:
        """The program's outcome to whoever submitted it; a fault there is theirs, not the jail's."""
        try:
            sent.done(*self._outcome(sent, line))
        except Exception:
            log.exception("sandbox worker %s: handling an outcome failed", self.label)

    def _outcome(self, sent: _Sent, line: bytes) -> tuple[Outcome, bool]:
        reply = parse_reply(line)
        cpu_s = self._cpu_used(sent, reply)
        observation, healthy = self._observe(reply, sent.limits, cpu_s)
        self.healthy = self.healthy and healthy
        verdict, detail = decide(observation)
        output = (reply or {}).get("output", "")
        outcome = Outcome(
            verdict=verdict,
            detail=detail,
            wall_s=round(time.monotonic() - sent.started, 6),
            backend=self.backend,
            limits=sent.limits,
            output=output if isinstance(output, str) else "",
            cpu_s=round(cpu_s or 0.0, 6),
            load_sensitive=load_sensitive(observation),
        )
        return outcome, healthy

    def _cpu_used(self, sent: _Sent, reply: dict | None) -> float | None:
        waited = number((reply or {}).get("cpu_s"))
        if sent.cpu_before is None or sent.cpu_after is None:
            return waited
        jail = max(sent.cpu_after - sent.cpu_before, 0.0)
        if waited is None:
            return jail
        ran_long = (number((reply or {}).get("wall_s")) or 0.0) >= CGROUP_CPU_MIN_WALL_S
        return max(waited, jail) if ran_long else waited

    def _observe(self, reply: dict | None, limits: Limits, cpu_s: float | None) -> tuple[Observation, bool]:
        if reply is None or reply.get("event") != "result":
            base = self._base(limits, cpu_s)
            if self._killed_by is KillReason.closed:
                return Observation(ready=True, killed_by=KillReason.closed, **base), False
            if self._killed_by is KillReason.unresponsive:
                fault = f"the worker did not answer within {limits.timeout_s + BACKSTOP_S:.1f} s"
            else:
                fault = "the worker died while the program ran" + in_parentheses(
                    last_words(self.stderr.text())
                )
            return Observation(ready=True, worker_fault=fault, **base), False
        if not reply.get("started"):
            fault = str(reply.get("fault") or "program not started")
            return Observation(sandbox_fault=fault, **self._base(limits, cpu_s)), False
        status = StatusParser(str(reply.get("nonce", "")))
        status.feed(str(reply.get("status", "")).encode("utf-8", "replace"))
        ready = bool(reply.get("ready"))
        sig = reply.get("signal")
        exit_status = reply.get("exit_status")
        observation = Observation(
            ready=ready,
            passed_record=status.passed,
            forged_pass=status.forged_pass,
            failure=status.failure,
            killed_by=KillReason.timeout if reply.get("timed_out") else None,
            exit_status=exit_status if isinstance(exit_status, int) else None,
            signal=sig if isinstance(sig, int) else None,
            sandbox_fault=None if ready else (status.setup_failure or "the program's set-up failed"),
            output_memory_error="MemoryError" in str(reply.get("output", "")),
            cpu_limit=status.cpu_limit,
            timeout_s=limits.timeout_s,
            cpu_time_s=limits.cpu_time_s,
            memory_cap=self.memory_cap,
            cpu_used_s=cpu_s,
        )
        return observation, ready  # it answered: the fork-server survived whatever the program did

    def _base(self, limits: Limits, cpu_s: float | None) -> dict[str, Any]:
        return {
            "timeout_s": limits.timeout_s,
            "cpu_time_s": limits.cpu_time_s,
            "memory_cap": self.memory_cap,
            "cpu_used_s": cpu_s,
        }

    def kill(self, reason: KillReason) -> None:
        """SIGTERM the jail (nsjail/firejail kill and reap everything in it); SIGKILL later."""
        if self._killed_by is None:
            self._killed_by = reason
        self._terminate()

    def _terminate(self) -> None:
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
        if self._replies_ended is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._replies_ended), 2.0)
        self._end_replies()  # the output's end never came: answered all the same
        if self._stderr_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._stderr_task, 2.0)
        self._cpu_clock.close()
