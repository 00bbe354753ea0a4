"""Fakes that fit the sweep's protocols: a scripted client, a verifier, a fleet and an in-memory
store that remembers every call (so a sample staged twice is seen, not hidden by the database's
INSERT OR IGNORE). No network, no jails, no root."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from engine.config import Scheduling
from engine.errors import HTTPStatusError, IgnoredNError, StreamError
from engine.fleet.state import ServerState
from engine.records import Problem, Sample
from engine.store import StoredVerdict
from engine.sweep.plan import Request
from engine.sweep.stream import Sampling
from engine.sweep.sweep import Sweep
from metrics.exporter import EngineMetrics
from metrics.running import RunningPassAtK
from sandbox import Limits, Outcome, Verdict

FAULTS = ("retryable", "fatal", "ignores_n", "connect", "unauthorized")


@dataclass(frozen=True)
class Fault:
    """What one stream() call does instead of finishing: deliver `after` choices, then fail."""

    kind: str  # one of FAULTS
    after: int = 0


def fault_error(kind: str) -> StreamError:
    if kind == "retryable":
        return StreamError("the stream broke")
    if kind == "fatal":
        return HTTPStatusError(400, "bad request")
    if kind == "ignores_n":
        return IgnoredNError("one choice where n were asked")
    if kind == "connect":
        return StreamError("connection refused", connect_failed=True)
    if kind == "unauthorized":
        return HTTPStatusError(401, "no")
    raise ValueError(kind)


def completion_of(task_id: str, index: int) -> str:
    """Repeats every 3 samples, so dedup has twins to find; index % 3 == 0 passes."""
    return f"{task_id}:{index % 3}"


class ScriptedClient:
    """Every request is answered choice by choice (yielding to the loop between choices), unless
    the script has a fault for that call (calls counted from 0, in the order they start)."""

    def __init__(self, faults: dict[int, Fault] | None = None, hang: bool = False):
        self.faults = faults or {}
        self.hang = hang  # never finish a stream: for abort()
        self.calls: list[tuple[str, Request]] = []

    async def stream(
        self,
        url: str,
        request: Request,
        on_sample: Callable[[Sample], None],
        on_tokens: Callable[[int], None],
    ) -> None:
        call = len(self.calls)
        self.calls.append((url, request))
        fault = self.faults.get(call)
        if fault is not None and fault.kind == "ignores_n" and request.n > 1:
            fault = Fault("ignores_n", 1)
        elif fault is not None and fault.kind == "ignores_n":
            fault = None  # one was asked, one is given: no fault to see
        deliver = request.n if fault is None else min(fault.after, request.n)
        for i in range(deliver):
            await asyncio.sleep(0)
            on_tokens(2)
            task = request.problem.task_id
            on_sample(
                Sample(
                    task, request.start + i, completion_of(task, request.start + i), 2, "stop", url, 0, 0, 0
                )
            )
        if self.hang:
            await asyncio.Event().wait()
        if fault is not None:
            raise fault_error(fault.kind)


class FakeVerifier:
    """Verdicts by completion (ending in ":0" passes; ":2" is an infrastructure error when
    `infra`, never reused), with dedup like sandbox.Verifier's."""

    def __init__(self, dedup: bool = True, infra: bool = False):
        self.dedup = dedup
        self.infra = infra
        self.cache: dict[tuple[str, str], Outcome] = {}
        self.runs = 0

    def known(self, task_id: str, completion: str) -> Outcome | None:
        return self.cache.get((task_id, completion)) if self.dedup else None

    async def verify(self, problem: Problem, completion: str) -> Outcome:
        await asyncio.sleep(0)
        self.runs += 1
        if self.infra and completion.endswith(":2"):
            return Outcome(Verdict.infra_error, "the jail would not start", 0.01, "fake", Limits(), "")
        verdict = Verdict.passed if completion.endswith(":0") else Verdict.failed
        outcome = Outcome(verdict, "", 0.01, "fake", Limits(), "")
        if self.dedup:
            self.cache[(problem.task_id, completion)] = Outcome(
                verdict, "", 0.0, "fake", Limits(), "", reused=True
            )
        return outcome


class FakeFleet:
    """Servers that are always up: a connect failure marks one down, and it is back at once."""

    def __init__(self, servers: int = 2, max_seqs: int = 8):
        self.servers = [ServerState(f"http://s{i}", max_seqs, up=True) for i in range(servers)]
        self.changed = asyncio.Event()
        self.marked_down = 0

    def mark_down(self, server: ServerState) -> None:
        self.marked_down += 1
        server.set_up(False)
        asyncio.get_running_loop().call_soon(self._back_up, server)

    def _back_up(self, server: ServerState) -> None:
        server.set_up(True)
        self.changed.set()

    async def watch(self) -> None:
        await asyncio.Event().wait()


@dataclass
class MemoryStore:
    """The store's sweep-facing methods, remembering every call."""

    samples: list[Sample] = field(default_factory=list)
    verdicts: list[StoredVerdict] = field(default_factory=list)
    failures: list[tuple[str, int]] = field(default_factory=list)
    left_unverified: list[Sample] = field(default_factory=list)  # as a crash would leave them
    flushes: int = 0

    def stage_sample(self, s: Sample) -> None:
        self.samples.append(s)

    def stage_verdict(self, v: StoredVerdict) -> None:
        self.verdicts.append(v)

    def stage_failure(self, task_id: str, sample_index: int, error: str, attempts: int) -> None:
        self.failures.append((task_id, sample_index))

    def unverified(self):
        return iter(self.left_unverified)

    def generated_indices(self) -> dict[str, set[int]]:
        generated: dict[str, set[int]] = {}
        for s in self.left_unverified:
            generated.setdefault(s.task_id, set()).add(s.sample_index)
        return generated

    def flush(self) -> None:
        self.flushes += 1


def problems(count: int) -> list[Problem]:
    return [Problem(f"T/{i}", "def f():\n") for i in range(count)]  # never judged: a fake verifier


def make_sweep(
    *,
    problem_count: int = 2,
    samples: int = 4,
    client: ScriptedClient | None = None,
    store: MemoryStore | None = None,
    verifier: FakeVerifier | None = None,
    fleet: FakeFleet | None = None,
    workers: int = 2,
    **scheduling,
) -> Sweep:
    """A Sweep of fakes; retries are due at once (no backoff) so schedules run in milliseconds."""
    running = RunningPassAtK()
    options = Scheduling(**{"request_n": 4, "flush_interval_s": 0.01, **scheduling})
    sweep = Sweep(
        problems=problems(problem_count),
        fleet=fleet or FakeFleet(),
        store=store or MemoryStore(),
        verifier=verifier or FakeVerifier(),
        workers=workers,
        metrics=EngineMetrics(CollectorRegistry(), running),
        running=running,
        sampling=Sampling(model="m", dataset="d"),
        samples=samples,
        options=options,
        client=client or ScriptedClient(),
    )
    sweep.generator.backoff = lambda attempt, jitter: 0.0
    return sweep


def run(sweep: Sweep, timeout: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(sweep.run(), timeout))
