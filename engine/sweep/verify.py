"""Verification: finished samples wait in a queue for one of `workers` verification tasks, and
each verdict is recorded and gives its queue slot back.

Verdicts are reused by the verifier (`sandbox.Verifier`: `known`, and coalescing inside
`verify`). What the queue adds is where a twin waits: a sample identical to one still queued or
being verified waits beside it, not in the queue, so it takes neither a place in the queue nor
a verification task (which would sit idle on the coalesced run, and its sandbox with it). With
the simulated fleet's 74 % of twins, bench/e2e.py's queue held a median 1,971 samples with twins
queued against 501 with twins beside. When the first one's verdict is in, its twins are enqueued
again and find it `known`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from engine.records import Problem, Sample
from engine.sweep.admission import Admission
from sandbox import Outcome


class SampleVerifier(Protocol):
    dedup: bool  # whether identical samples share one verdict

    def known(self, task_id: str, completion: str) -> Outcome | None:
        """The verdict of an identical sample verified already, or None."""

    async def verify(self, problem: Problem, completion: str) -> Outcome: ...


class Verification:
    def __init__(
        self,
        *,
        verifier: SampleVerifier,
        problems: dict[str, Problem],
        admission: Admission,
        record: Callable[[Sample, Outcome], None],
        on_depth: Callable[[int], None] = lambda depth: None,
        on_error: Callable[[Exception], None] = lambda exc: None,
    ):
        self.verifier = verifier
        self.problems = problems
        self.admission = admission
        self._record = record
        self._on_depth = on_depth  # the queue-depth gauge
        self._queue: asyncio.Queue[Sample] = asyncio.Queue()
        self._twins: dict[tuple[str, str], list[Sample]] = {}  # queued (task, completion) -> twins beside it
        self._later: dict[asyncio.Future[Outcome], Sample] = {}  # deferred by the verifier, not answered
        self._on_error = on_error  # a deferred sample's verification failed

    @property
    def depth(self) -> int:
        """Samples waiting for a verification task."""
        return self._queue.qsize()

    def enqueue(self, sample: Sample) -> None:
        """To a sandbox through the queue, unless an identical sample has a verdict already (it
        is reused at once) or is queued already (this one waits beside it)."""
        known = self.verifier.known(sample.task_id, sample.completion)
        if known is not None:
            self._done(sample, known)
            return
        if self.verifier.dedup:
            key = (sample.task_id, sample.completion)
            if key in self._twins:
                self._twins[key].append(sample)
                return
            self._twins[key] = []
        self._queue.put_nowait(sample)
        self._on_depth(self._queue.qsize())

    async def worker(self) -> None:
        verify = getattr(self.verifier, "verify_or_defer", self.verifier.verify)
        while True:
            sample = await self._queue.get()
            self._on_depth(self._queue.qsize())
            try:
                outcome = await verify(self.problems[sample.task_id], sample.completion)
                if isinstance(outcome, asyncio.Future):  # deferred behind the others: take the next
                    self._later[outcome] = sample
                    outcome.add_done_callback(self._deferred_done)
                    continue
                self._done(sample, outcome)
            except BaseException:
                self._settle(sample)
                raise
            self._settle(sample)

    def _deferred_done(self, future: asyncio.Future[Outcome]) -> None:
        """A deferred sample's verdict (or its withdrawal when the sweep ends); an error ends
        the sweep (`on_error`), as it does when a worker meets one."""
        sample = self._later.pop(future)
        try:
            self._done(sample, future.result())
        except asyncio.CancelledError:
            pass  # withdrawn (the sweep ends): stored unverified, verified when it resumes
        except Exception as exc:  # noqa: BLE001 - handed to the sweep, which raises it
            self._on_error(exc)
        finally:
            self._settle(sample)

    def withdraw_deferred(self) -> None:
        """The sweep ends: deferred samples stop (stored unverified: verified on resume)."""
        for future in list(self._later):
            future.cancel()

    def _settle(self, sample: Sample) -> None:
        # Twins get the verdict now; if it cannot be reused (a sandbox fault), they queue
        # for a sandbox of their own. Before task_done, so a drain waits for them.
        for twin in self._twins.pop((sample.task_id, sample.completion), ()):
            self.enqueue(twin)
        self._queue.task_done()

    async def drain(self) -> None:
        """Until every queued sample has its verdict."""
        await self._queue.join()

    def _done(self, sample: Sample, outcome: Outcome) -> None:
        self._record(sample, outcome)
        self.admission.release(1)
