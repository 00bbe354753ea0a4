"""The sweep: requests stream in, finished samples queue for a sandbox, verdicts go to the store.

`Sweep` only wires its parts and runs them; each part owns one piece of the ledger:

    plan.py        which samples to ask for, in which requests, and their retries (pure)
    admission.py   the queue slots: held from admission to verdict (the only owner)
    generate.py    the request loop: admit, send, retry, fall back to one sample per request
    verify.py      the verification queue and workers (dedup is the verifier's)
    record.py      a verdict -> store, running pass@k, metrics
    snapshot.py    the read-only view of all of it, for the progress line, metrics and the page
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from engine.config import Scheduling
from engine.records import Problem, Sample
from engine.sweep.admission import Admission
from engine.sweep.generate import Client, FleetView, Generator, SampleLog
from engine.sweep.plan import Request, plan_requests
from engine.sweep.policies import AdaptivePlan, more_ready
from engine.sweep.record import Recorder, VerdictLog
from engine.sweep.snapshot import Meter, Snapshot, fleet_view, progress_of
from engine.sweep.stream import Sampling, StreamingClient
from engine.sweep.verify import SampleVerifier, Verification
from metrics.exporter import EngineMetrics
from metrics.running import RunningPassAtK


class SweepFleet(FleetView, Protocol):
    async def watch(self) -> None:
        """Probe the servers until cancelled."""


class SweepStore(SampleLog, VerdictLog, Protocol):
    def unverified(self) -> Iterator[Sample]: ...

    def generated_indices(self) -> dict[str, set[int]]: ...

    def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SweepStats:
    """What this process did (a resumed run's earlier work is in the store, not here)."""

    tokens: int
    samples_generated: int
    samples_verified: int
    infra_errors: int


def default_queue_size(servers: int, options: Scheduling) -> int:
    """Queue slots are held from admission to verdict, so they must cover every sequence the
    fleet can run at once, and as much again waiting for a sandbox, or GPUs go idle."""
    return max(1024, 2 * servers * options.max_seqs_per_server)


class Sweep:
    def __init__(
        self,
        *,
        problems: list[Problem],
        fleet: SweepFleet,
        store: SweepStore,
        verifier: SampleVerifier,
        workers: int,
        metrics: EngineMetrics,
        running: RunningPassAtK,
        sampling: Sampling,
        samples: int,
        options: Scheduling,
        session: aiohttp.ClientSession | None = None,
        client: Client | None = None,
    ):
        if client is None:
            if session is None:
                raise TypeError("a Sweep needs a client, or a session to make one")
            client = StreamingClient(session, sampling, options)
        self.problems = problems
        self.fleet = fleet
        self.store = store
        self.running = running
        self.samples = samples  # per problem
        self.options = options
        self._workers = workers
        capacity = options.queue_size or default_queue_size(len(fleet.servers), options)
        self.admission = Admission(capacity, on_release=fleet.changed.set)
        self.recorder = Recorder(store=store, running=running, metrics=metrics)
        self.verification = Verification(
            verifier=verifier,
            problems={p.task_id: p for p in problems},
            admission=self.admission,
            record=self.recorder.record,
            on_depth=metrics.queue_depth.set,
            on_error=self._crash,
        )
        self.generator = Generator(
            fleet=fleet,
            client=client,
            admission=self.admission,
            store=store,
            metrics=metrics,
            deliver=self.verification.enqueue,
            crash=self._crash,
            request_n=options.request_n,
            retries=options.retries,
        )
        self._phase = "running"
        self._stopping = False
        self._crashed: Exception | None = None
        self._work: asyncio.Task | None = None
        self._started_at = time.time()
        self._meter = Meter(time.monotonic(), self._verified())

    # -- control -----------------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """Whether the sweep was stopped before its end."""
        return self._stopping

    def stop(self) -> None:
        """Graceful stop: admit no new request; live streams and the queue drain."""
        self._stopping = True
        self.generator.stop()

    def abort(self) -> None:
        """Stop at once: streams and verifications are cancelled; what they had not finished
        is generated or verified again when the run resumes."""
        self.stop()
        if self._work is not None:
            self._work.cancel()

    def _crash(self, exc: Exception) -> None:
        """End the sweep with `exc` (raised by run()); what is stored stays, and resumes."""
        if self._crashed is None:
            self._crashed = exc
            self.abort()

    async def run(self) -> None:
        for sample in self.store.unverified():  # generated before a crash, never verified
            self.admission.hold(1)
            self.verification.enqueue(sample)
        background = [asyncio.create_task(self.verification.worker()) for _ in range(self._workers)]
        background += [asyncio.create_task(self._flusher()), asyncio.create_task(self.fleet.watch())]
        work = self._work = asyncio.create_task(self._generate_and_drain(self._plan()))
        try:
            # A verifier or the flusher dying must stop the sweep, not leave it waiting forever.
            done, _ = await asyncio.wait([work, *background], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if self._crashed is not None:
                    raise self._crashed
                if task is work and task.cancelled() and self._stopping:
                    continue  # abort()
                task.result()
        finally:
            inflight = list(self.generator.inflight)
            for task in [work, *background, *inflight]:
                task.cancel()
            self.verification.withdraw_deferred()
            await asyncio.gather(work, *background, *inflight, return_exceptions=True)
            self.store.flush()
            self._phase = "stopped" if self._stopping else "finished"

    def _plan(self) -> Iterator[Request | None]:
        o, generated = self.options, self.store.generated_indices()
        if o.policy == "uniform":
            return plan_requests(self.problems, self.samples, generated, o.request_n)
        counts = self.running.counts
        return AdaptivePlan(
            self.problems, self.samples, generated, o.request_n, counts, o.policy, o.stop_after
        )

    async def _generate_and_drain(self, plan: Iterator[Request | None]) -> None:
        # An adaptive plan may wait for verdicts still queued when the last stream ends.
        await self.generator.run_until_idle(plan)
        await self.verification.drain()
        while not self._stopping and more_ready(plan):
            await self.generator.run_until_idle(plan)
            await self.verification.drain()

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.options.flush_interval_s)
            self.store.flush()

    # -- what it has done --------------------------------------------------------------------

    @property
    def stats(self) -> SweepStats:
        return SweepStats(
            tokens=self.generator.tokens,
            samples_generated=self.generator.samples,
            samples_verified=self.recorder.verified,
            infra_errors=self.recorder.infra_errors,
        )

    def _verified(self) -> int:
        return progress_of(self.running.counts(), (p.task_id for p in self.problems))[0]

    def snapshot(self) -> Snapshot:
        """Where the sweep stands now; each fact computed here once."""
        now = time.monotonic()
        verified, solved = progress_of(self.running.counts(), (p.task_id for p in self.problems))
        samples_per_s, tokens_per_s = self._meter.rates(now, verified, self.generator.tokens)
        since = max(self.recorder.last_verdict_at or 0.0, self._started_at)
        state = "draining" if self._phase == "running" and self._stopping else self._phase
        return Snapshot(
            state=state,
            target=len(self.problems) * self.samples,
            verified=verified,
            problems=len(self.problems),
            solved=solved,
            pass_at_1=self.running.scores([1]).get(1),
            tokens=self.generator.tokens,
            samples_per_s=samples_per_s,
            tokens_per_s=tokens_per_s,
            fleet=fleet_view(self.fleet.servers),
            queue_depth=self.verification.depth,
            queue_held=self.admission.held,
            queue_capacity=self.admission.capacity,
            no_progress_s=round(max(0.0, time.time() - since), 1),
        )
