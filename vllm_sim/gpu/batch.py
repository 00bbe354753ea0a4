"""The simulated GPU: continuous batching at a fixed aggregate token rate.

Like vLLM's engine loop, every step gives one token to each running sequence; a step takes
max(min_step, running / R) seconds, so a full batch generates R tokens/s in aggregate and a
lone sequence 1 / min_step. At most `max_num_seqs` sequences run, the rest wait in order.
Steps are scheduled against deadlines (not "sleep, then step"), so the achieved rate stays at R
even though timers fire late; a loop that falls more than a step behind starts afresh rather
than bursting to catch up.

The step itself is the hot path: the chunk of every sequence is a concatenation of
pre-encoded bytes, and all events one request produced in a step leave in one transport write
(each event still its own HTTP chunk, as uvicorn sends them). Writing without awaiting keeps
one slow client from stalling the batch; a client whose socket buffer backs up past a limit
simply gets no tokens until it drains, and a client that went away is aborted.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from typing import Any, Protocol

from vllm_sim.api.server_metrics import ServerMetrics
from vllm_sim.api.wire import DONE_EVENT, ChatChunkEncoder, Choice, ChunkEncoder, http_chunk
from vllm_sim.gpu.plans import EmissionPlan

log = logging.getLogger(__name__)

_BACKLOG_BYTES = 1 << 20  # a client this far behind gets no tokens until it reads


class Sequence:
    """One choice being generated (vLLM: a child request)."""

    __slots__ = (
        "job",
        "index",
        "plan",
        "prefix",
        "prompt_tokens",
        "max_tokens",
        "k",
        "done",
        "queued_at",
        "first_token_at",
    )

    def __init__(self, job: Job, index: int, plan: EmissionPlan, prompt_tokens: int, max_tokens: int):
        self.job = job
        self.index = index
        self.plan = plan
        self.prefix = job.encoder.prefix(index) if job.encoder else b""
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.k = 0  # tokens generated
        self.done = False
        self.queued_at = 0.0
        self.first_token_at = 0.0


class Connection(Protocol):
    """A client's connection, as the batch engine and the fault injection use it: an asyncio
    transport, or the stand-in that sabotages its output (vllm_sim/faults/injection.py)."""

    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


class Job:
    """One /v1/completions or /v1/chat/completions request: its sequences, and the connection
    their output goes to.

    `transport` is the client's connection (checked for disconnects; written to when
    streaming). `encoder` is set exactly when streaming. `framed` says whether to frame events as HTTP/1.1 chunks ourselves. `opening`
    holds events that go out before the first token of any choice (chat's role chunks).
    """

    __slots__ = (
        "request_id",
        "created",
        "seqs",
        "encoder",
        "transport",
        "framed",
        "stream",
        "continuous",
        "include_usage",
        "out",
        "open",
        "prompt_tokens",
        "completion_tokens",
        "choices",
        "done",
        "aborted",
        "stalled",
        "opening",
    )

    def __init__(
        self,
        request_id: str,
        created: int,
        encoder: ChunkEncoder | ChatChunkEncoder | None,
        transport: Connection | None,
        *,
        stream: bool,
        framed: bool = True,
        include_usage: bool = False,
        continuous: bool = False,
    ):
        self.request_id = request_id
        self.created = created
        self.seqs: list[Sequence] = []
        self.encoder = encoder
        self.transport = transport
        self.framed = framed
        self.stream = stream
        self.continuous = continuous
        self.include_usage = include_usage
        self.out: list[bytes] = []  # this step's framed events
        self.open = 0  # sequences not finished yet
        self.prompt_tokens = 0  # once per prompt, as vLLM's usage counts them
        self.completion_tokens = 0
        self.choices: list[Choice] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.aborted = False
        self.stalled = False
        self.opening: list[bytes] = []

    def add(self, index: int, plan: EmissionPlan, prompt_tokens: int, max_tokens: int) -> Sequence:
        seq = Sequence(self, index, plan, prompt_tokens, max_tokens)
        self.seqs.append(seq)
        self.open += 1
        return seq

    def emit(self, event: bytes) -> None:
        self.out.append(http_chunk(event) if self.framed else event)

    def connection(self) -> Connection | None:
        """The client's connection while it is open; None once the client went away."""
        transport = self.transport
        return None if transport is None or transport.is_closing() else transport


class BatchEngine:
    def __init__(
        self,
        tokens_per_second: float,
        max_num_seqs: int,
        min_step_s: float,
        metrics: ServerMetrics,
        rng: random.Random,
    ):
        self.rate = tokens_per_second
        self.max_num_seqs = max_num_seqs
        self.min_step = min_step_s
        self.metrics = metrics
        self.running: list[Sequence] = []
        self.waiting: deque[Sequence] = deque()
        self._deferred: list[Sequence] = []  # join the queue one step late
        self._jobs: list[Job] = []
        self._rng = rng
        self._wake = asyncio.Event()
        self._closed = False

    # -- admission -------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a job's sequences. Like vLLM's fan-out of n > 1 into child requests, some
        children reach the scheduler a step after the first, so choices do not move in lockstep."""
        if self._closed:  # shutting down: the handler sees an aborted job
            self.cancel(job)
            return
        now = asyncio.get_running_loop().time()
        for seq in job.seqs:
            seq.queued_at = now
            late = seq is not job.seqs[0] and self._rng.random() < 0.5
            (self._deferred if late else self.waiting).append(seq)
        self._jobs.append(job)
        self.metrics.prompt_tokens.inc(sum(s.prompt_tokens for s in job.seqs))
        self._wake.set()

    def cancel(self, job: Job) -> None:
        """Stop generating for a job (its client went away, or its handler was cancelled)."""
        if not job.aborted:
            job.aborted = True
            job.out.clear()
            if not job.done.done():
                job.done.set_result(None)

    def close(self) -> None:
        """Abort everything (server shutdown) and stop the loop."""
        self._closed = True
        for job in self._jobs:
            self.cancel(job)
        self._jobs.clear()
        self.running.clear()
        self.waiting.clear()
        self._deferred.clear()
        self._wake.set()

    def num_waiting(self) -> int:
        return len(self.waiting) + len(self._deferred)

    def kv_tokens(self) -> int:
        """Tokens the running sequences hold in the (simulated) KV cache."""
        return sum(s.prompt_tokens + s.k for s in self.running)

    def abort_connections(self) -> None:
        """Cut every client off mid-stream, as a crashing server would."""
        for job in self._jobs:
            if job.transport is not None:
                job.transport.abort()

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while not self._closed:
            if not (self.running or self.waiting or self._deferred):
                self._wake.clear()
                await self._wake.wait()
                deadline = None
                continue
            self._admit(loop.time())
            step_time = max(self.min_step, len(self.running) / self.rate)
            now = loop.time()
            if deadline is None or deadline < now - step_time:
                deadline = now  # idle, or too far behind: start afresh instead of bursting
            deadline += step_time
            if deadline > now:
                await asyncio.sleep(deadline - now)
            if self._closed:
                break
            self.step(loop.time())

    def _admit(self, now: float) -> None:
        running, waiting = self.running, self.waiting
        while waiting and len(running) < self.max_num_seqs:
            seq = waiting.popleft()
            if seq.job.aborted:
                continue
            running.append(seq)
            self.metrics.queue_time.observe(now - seq.queued_at)
        waiting.extend(self._deferred)
        self._deferred.clear()

    def step(self, now: float) -> int:
        """Give one token to every running sequence; returns how many tokens that made."""
        tokens = 0
        ended = False
        for seq in self.running:
            job = seq.job
            if job.aborted:
                seq.done = ended = True
                continue
            if job.stalled:
                continue
            plan = seq.plan
            k = seq.k
            if k >= len(plan.deltas):
                plan.extend(k)
            seq.k = k + 1
            tokens += 1
            if k == 0:
                seq.first_token_at = now
                if job.opening:  # like vLLM, on the request's first output, before its tokens
                    for event in job.opening:
                        job.emit(event)
                    job.opening = []
            last = k == plan.stop_step or k + 1 == seq.max_tokens
            encoder = job.encoder
            if encoder is not None:
                usage = encoder.step_usage(seq.prompt_tokens, k + 1) if job.continuous else b""
                if not last:
                    job.emit(encoder.token_event(seq.prefix, plan.deltas[k], usage))
                elif k == plan.stop_step:
                    job.emit(
                        encoder.finish_event(
                            seq.prefix, plan.deltas[k], "stop", plan.stop_reason, usage, not job.include_usage
                        )
                    )
                else:
                    job.emit(
                        encoder.finish_event(
                            seq.prefix, plan.final_delta(k), "length", None, usage, not job.include_usage
                        )
                    )
            if last:
                self._finish(seq, now)
                ended = True
        if ended:
            self.running = [s for s in self.running if not s.done]
        self._flush()
        if tokens:
            self.metrics.generation_tokens.inc(tokens)
        return tokens

    def _finish(self, seq: Sequence, now: float) -> None:
        seq.done = True
        job = seq.job
        plan = seq.plan
        stopped = seq.k - 1 == plan.stop_step
        reason = "stop" if stopped else "length"
        job.completion_tokens += seq.k
        job.open -= 1
        if not job.stream:
            stop = plan.stop_reason if stopped else None
            job.choices.append(Choice(seq.index, plan.text(seq.k), reason, stop))
        self.metrics.success[reason].inc()
        self.metrics.e2e_latency.observe(now - seq.queued_at)
        self.metrics.time_to_first_token.observe(seq.first_token_at - seq.queued_at)
        if job.open == 0:
            if job.encoder is not None:
                if job.include_usage:
                    job.emit(job.encoder.usage_event(job.prompt_tokens, job.completion_tokens))
                job.emit(DONE_EVENT)
            job.choices.sort(key=lambda c: c.index)
            # The handler resumes after this step has been flushed (one thread, one loop).
            if not job.done.done():
                job.done.set_result(None)

    def _flush(self) -> None:
        """One write per job with output; drop jobs that ended or whose client went away."""
        keep = []
        for job in self._jobs:
            if job.aborted:
                continue
            transport = job.connection()
            if transport is None:
                log.debug("client went away; aborting its %d sequences", job.open)
                self.cancel(job)
                continue
            if job.out:
                transport.write(b"".join(job.out))
                job.out.clear()
                job.stalled = transport.get_write_buffer_size() > _BACKLOG_BYTES
            elif job.stalled:
                job.stalled = transport.get_write_buffer_size() > _BACKLOG_BYTES
            if job.open:
                keep.append(job)
        self._jobs = keep
