"""Verdicts: what was observed about one run, and the one pure function that judges it.

A sample passes only on a positive signal: the harness's pass record carrying this sample's
nonce, which it writes only when exec of the program returned (so `check(entry_point)` returned).
Exit statuses never make a pass: nsjail's 0, 1 and 255 each have several meanings, and the
program can exit with any status it likes. The rows of `decide`, in order:

    pass record with our nonce (after "ready")      passed
    harness never said "ready"                       infra_error  (sandbox fault: no program ran)
    our wall-clock timer fired                       timeout  (load-sensitive unless its CPU reached the limit)
    pool closed while it ran                         infra_error
    the worker died or stopped answering             infra_error  (sandbox fault)
    killed by SIGPROF, or a CPU-limit record         timeout  (the CPU-time limit, Limits.cpu_time_s)
    killed by SIGXCPU / nsjail's own time limit      timeout  (backstops)
    killed by SIGKILL under a jail memory cap        oom      (the cgroup OOM killer)
    killed by any other signal                       error    (a crash: SIGSEGV, SIGABRT ...)
    oom record (MemoryError)                         oom
    failed record (exception, SystemExit ...)        failed
    output shows a MemoryError, no record            oom
    pass record with a wrong nonce                   failed   (forged)
    exited without a record                          failed   (os._exit, killed its process group ...)

`infra_error` is not a verdict about the program: the sandbox failed, so the sample is retried
(sandbox/verifier.py), and if that persists it is stored as such and left out of pass@k.

Load-sensitive: a wall-clock timeout whose CPU time (the jail's cgroup: the sample and all it
spawned) stayed under its CPU limit could have been caused by a loaded machine; `load_sensitive`
says so, and the verifier confirms it on a reserved sandbox before it is stored or reused. A CPU
overrun cannot come from load, so every other verdict is final at once.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass

from sandbox.limits import Limits
from sandbox.protocol import Failure


class Verdict(str, enum.Enum):
    passed = "passed"
    failed = "failed"
    timeout = "timeout"
    oom = "oom"
    error = "error"
    infra_error = "infra_error"  # not a verdict about the program: the sandbox failed (never reused)

    def __str__(self) -> str:
        return self.value


class KillReason(str, enum.Enum):
    """Why the engine itself killed a jail."""

    timeout = "timeout"  # the program's wall-clock limit
    startup = "startup"  # the harness did not say "ready" in time
    closed = "closed"  # the pool was closed
    unresponsive = "unresponsive"  # the worker did not answer by the engine's backstop


@dataclass(frozen=True, slots=True)
class Observation:
    """The facts of one run, as gathered by a backend."""

    ready: bool = False  # the harness said "ready": the jail started and the program began
    passed_record: bool = False  # a pass record with this sample's nonce
    forged_pass: bool = False  # a pass record with another nonce
    failure: Failure | None = None  # the last failed/oom record
    killed_by: KillReason | None = None  # the engine killed the jail, and why
    exit_status: int | None = None  # the program's exit status, when it exited
    signal: int | None = None  # the signal that ended the program
    sandbox_fault: str | None = None  # the program's sandbox could not be set up
    worker_fault: str | None = None  # the worker (fork-server jail) died or hung while the program ran
    jail_time_limit: bool = False  # nsjail's --time_limit backstop fired
    memory_cap: bool = False  # a jail-wide memory cgroup was in force
    output_memory_error: bool = False  # "MemoryError" in the captured output
    cpu_limit: bool = (
        False  # the harness's CPU-time limit record (the program could forge one: still a failure)
    )
    timeout_s: float = 0.0
    cpu_time_s: float | None = None
    startup_timeout_s: float = 0.0
    cpu_used_s: float | None = None  # CPU time of the sample and its descendants; None: not measured


def decide(obs: Observation) -> tuple[Verdict, str]:
    """Verdict and a one-line detail; see the module docstring for the table."""
    if obs.ready and obs.passed_record:
        return Verdict.passed, "check() returned"
    if not obs.ready:
        return Verdict.infra_error, "sandbox fault: " + _startup_fault(obs)
    if obs.killed_by is KillReason.timeout:
        return Verdict.timeout, f"wall-clock limit {float(obs.timeout_s)} s"
    if obs.killed_by is KillReason.closed:
        return Verdict.infra_error, "sandbox closed while the program ran"
    if obs.worker_fault is not None or obs.killed_by is not None:
        return Verdict.infra_error, "sandbox fault: " + (obs.worker_fault or "the worker stopped answering")
    if obs.signal is not None:
        return _by_signal(obs)
    if obs.cpu_limit:
        return Verdict.timeout, f"CPU-time limit {obs.cpu_time_s} s"
    if obs.failure is not None:
        if obs.failure.oom:
            return Verdict.oom, _exception_line(obs.failure)
        return Verdict.failed, _exception_line(obs.failure)
    if obs.output_memory_error:
        return Verdict.oom, "MemoryError (in the output; no record from the harness)"
    if obs.forged_pass:
        return Verdict.failed, "pass record with a wrong nonce (forged)"
    return Verdict.failed, f"exited without finishing check() ({_exit_text(obs)})"


def load_sensitive(obs: Observation) -> bool:
    """A wall-clock timeout whose measured CPU stayed under the CPU limit (or was not measured):
    on an idle machine the sample might have finished, so this verdict needs confirming."""
    if obs.killed_by is not KillReason.timeout or decide(obs)[0] is not Verdict.timeout:
        return False
    limit = obs.cpu_time_s or obs.timeout_s
    return obs.cpu_used_s is None or obs.cpu_used_s < limit


def _startup_fault(obs: Observation) -> str:
    if obs.killed_by is KillReason.closed:
        return "pool closed before the program started"
    if obs.sandbox_fault:
        return obs.sandbox_fault
    if obs.killed_by is KillReason.startup:
        return f"harness not ready after {float(obs.startup_timeout_s)} s"
    return f"jail ended before the harness was ready ({_exit_text(obs)})"


def _by_signal(obs: Observation) -> tuple[Verdict, str]:
    name = signal_name(obs.signal)
    if obs.signal == signal.SIGPROF:
        return Verdict.timeout, f"CPU-time limit {obs.cpu_time_s} s"
    if obs.signal == signal.SIGXCPU:
        return Verdict.timeout, "cpu-time limit (SIGXCPU)"
    if obs.jail_time_limit:
        return Verdict.timeout, "nsjail time limit"
    if obs.signal == signal.SIGKILL and obs.memory_cap:
        return Verdict.oom, "killed by SIGKILL at the jail's memory limit"
    return Verdict.error, f"killed by {name}"


def _exception_line(failure: Failure) -> str:
    return f"{failure.type}: {failure.message}" if failure.message else failure.type


def _exit_text(obs: Observation) -> str:
    if obs.signal is not None:
        return f"killed by {signal_name(obs.signal)}"
    if obs.exit_status is not None:
        return f"exit status {obs.exit_status}"
    return "no exit status"


def signal_name(number: int | None) -> str:
    if number is not None:
        try:
            return signal.Signals(number).name
        except ValueError:
            pass  # a number with no name on this platform
    return f"signal {number}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verdict on one program, with what it was obtained under."""

    verdict: Verdict
    detail: str  # one line: "AssertionError", "killed by SIGSEGV", "wall-clock limit 3 s" ...
    wall_s: float  # the whole verification, engine side: request to verdict
    backend: str  # "nsjail", "firejail", "none"
    limits: Limits
    output: str  # tail of the program's stdout+stderr, possibly truncated
    cpu_s: float = 0.0  # CPU time of the program and all its descendants (user + system)
    reused: bool = False  # the verdict of an identical earlier sample (dedup), not a new run
    load_sensitive: bool = False  # a timeout the machine's load could have caused: not final (see module doc)
    # Set once a task kind that compares outputs has judged the run (Verifier): the verdict and
    # detail above are then the kind's, and judging it again gives the same.
    tests_passed: int | None = None
    tests_total: int | None = None
    base_passed: bool | None = None  # EvalPlus-style: the base suite alone

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.passed

    @property
    def final(self) -> bool:
        """May be stored and reused as it is: a verdict about the program that load cannot have caused."""
        return self.verdict is not Verdict.infra_error and not self.load_sensitive

    def to_dict(self) -> dict[str, object]:
        return {
            "verdict": self.verdict.value,
            "detail": self.detail,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "reused": self.reused,
            "backend": self.backend,
            "limits": self.limits.to_dict(),
            "output": self.output,
            **{k: v for k, v in self._tests().items() if v is not None},
        }

    def _tests(self) -> dict[str, int | bool | None]:
        return {
            "tests_passed": self.tests_passed,
            "tests_total": self.tests_total,
            "base_passed": self.base_passed,
        }
