"""Verification: finished samples wait in a queue for one of `workers` verification tasks, and
each verdict is recorded and gives its queue slot back.

Dedup is wholly the verifier's (`sandbox.Verifier`): a sample whose twin has a verdict already
is recorded at once without queueing (`known`), and twins in flight at the same time are
coalesced inside `verify`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from engine.records import Problem, Sample
from engine.sweep.admission import Admission
from sandbox import Outcome


class SampleVerifier(Protocol):
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
    ):
        self.verifier = verifier
        self.problems = problems
        self.admission = admission
        self._record = record
        self._on_depth = on_depth  # the queue-depth gauge
        self._queue: asyncio.Queue[Sample] = asyncio.Queue()

    @property
    def depth(self) -> int:
        """Samples waiting for a verification task."""
        return self._queue.qsize()

    def enqueue(self, sample: Sample) -> None:
        """To a sandbox through the queue, unless an identical sample has a verdict already."""
        known = self.verifier.known(sample.task_id, sample.completion)
        if known is not None:
            self._done(sample, known)
            return
        self._queue.put_nowait(sample)
        self._on_depth(self._queue.qsize())

    async def worker(self) -> None:
        while True:
            sample = await self._queue.get()
            self._on_depth(self._queue.qsize())
            try:
                outcome = await self.verifier.verify(self.problems[sample.task_id], sample.completion)
                self._done(sample, outcome)
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Until every queued sample has its verdict."""
        await self._queue.join()

    def _done(self, sample: Sample, outcome: Outcome) -> None:
        self._record(sample, outcome)
        self.admission.release(1)
