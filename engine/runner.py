"""The sweep: requests stream in, finished samples queue for a sandbox, verdicts go to the store.

Decisions (what to request, whether to admit it, which server) come from `engine.scheduler`;
this module only carries them out on the event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from dataclasses import dataclass, field

import aiohttp

from engine.client import (
    credible_completion_tokens,
    request_body,
    stream_completion,
    timeout_for,
)
from engine.config import SamplingSettings, Scheduling
from engine.errors import IgnoredNError, StreamError, UnauthorizedError
from engine.fleet.probes import Fleet
from engine.fleet.state import ServerState, next_reopening, pick_server
from engine.policies import AdaptivePlan, more_ready
from engine.progress import Progress
from engine.records import Problem, Sample
from engine.scheduler import (
    Admission,
    Request,
    backoff_seconds,
    contiguous_runs,
    plan_requests,
    problem_seed,
    take_for,
)
from engine.store import Store, StoredVerdict
from engine.tasks import chat_messages, extract_completion
from engine.wire.openai import FinishedChoice, StreamAssembler
from metrics.exporter import EngineMetrics
from metrics.running import RunningPassAtK
from sandbox import Outcome, SandboxPool, Verdict
from sandbox.verifier import Verifier

log = logging.getLogger(__name__)

_ASKED = SamplingSettings()  # the defaults, written in engine.config


@dataclass(frozen=True, slots=True)
class Sampling:
    """What decides the samples themselves; a run resumes only with the same values."""

    model: str
    dataset: str
    temperature: float = _ASKED.temperature
    top_p: float = _ASKED.top_p
    max_tokens: int = _ASKED.max_tokens
    stop: tuple[str, ...] = ()  # the task kind's, for /v1/completions
    seed: int = _ASKED.seed
    api: str = _ASKED.api  # or "chat": /v1/chat/completions, code taken from the answer
    system_prompt: str = ""  # chat only

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stop": list(self.stop),
            "seed": self.seed,
            "api": self.api,
            "system_prompt": self.system_prompt,
        }


def default_queue_size(servers: int, options: Scheduling) -> int:
    """Queue slots are held from admission to verdict, so they must cover every sequence the
    fleet can run at once, and as much again waiting for a sandbox, or GPUs go idle."""
    return max(1024, 2 * servers * options.max_seqs_per_server)


@dataclass(slots=True)
class SweepStats:
    tokens: int = 0
    samples_generated: int = 0
    samples_verified: int = 0
    infra_errors: int = 0  # samples whose sandbox kept failing: stored as such, retried on resume
    started: float = field(default_factory=time.monotonic)


class Sweep:
    def __init__(
        self,
        *,
        problems: list[Problem],
        fleet: Fleet,
        session: aiohttp.ClientSession,
        store: Store,
        sandbox: SandboxPool,
        verifier: Verifier,
        workers: int,
        metrics: EngineMetrics,
        running: RunningPassAtK,
        sampling: Sampling,
        samples: int,
        options: Scheduling,
        progress: Progress | None = None,
    ):
        self.problems = {p.task_id: p for p in problems}
        self._order = problems
        self.fleet = fleet
        self.session = session
        self.store = store
        self.sandbox = sandbox
        self.verifier = verifier
        self.workers = workers
        self.metrics = metrics
        self.running = running
        self.sampling = sampling
        self.samples = samples  # per problem
        self.options = options
        self.progress = progress
        self.stats = SweepStats()
        self.admission = Admission(options.queue_size or default_queue_size(len(fleet.servers), options))
        self._queue: asyncio.Queue[Sample] = asyncio.Queue()
        self._retries: list[tuple[float, int, Request]] = []  # heap of (due, tiebreak, request)
        self._twins: dict[
            tuple[str, str], list[Sample]
        ] = {}  # queued (task, completion) -> identical samples waiting
        self._retry_seq = 0
        self._inflight: set[asyncio.Task] = set()
        self._timeout = timeout_for(options.idle_timeout_s, options.request_timeout_s)
        self._rng = random.Random()
        self._stopping = False
        self._crashed: Exception | None = None
        self._work: asyncio.Task | None = None

    @property
    def stopped(self) -> bool:
        """Whether the sweep was stopped before its end."""
        return self._stopping

    def stop(self) -> None:
        """Graceful stop: admit no new request; live streams and the queue drain."""
        self._stopping = True
        self.fleet.changed.set()

    def abort(self) -> None:
        """Stop at once: streams and verifications are cancelled; what they had not finished
        is generated or verified again when the run resumes."""
        self._stopping = True
        if self._work is not None:
            self._work.cancel()

    async def run(self) -> None:
        for sample in self.store.unverified():  # generated before a crash, never verified
            self.admission.reserve(1)
            self._enqueue(sample)
        o = self.options
        if o.policy == "uniform":
            plan = plan_requests(self._order, self.samples, self.store.generated_indices(), o.request_n)
        else:
            plan = AdaptivePlan(
                self._order,
                self.samples,
                self.store.generated_indices(),
                o.request_n,
                self.running.counts,
                o.policy,
                o.stop_after,
            )
        background = [asyncio.create_task(self._verifier()) for _ in range(self.workers)]
        background += [asyncio.create_task(self._flusher()), asyncio.create_task(self.fleet.watch())]
        work = self._work = asyncio.create_task(self._generate_and_drain(plan))
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
            for task in [work, *background, *self._inflight]:
                task.cancel()
            await asyncio.gather(work, *background, *self._inflight, return_exceptions=True)
            self.store.flush()

    # -- generation --------------------------------------------------------------------------

    async def _generate_and_drain(self, plan) -> None:
        # An adaptive plan may wait for verdicts still queued when the last stream ends.
        await self._generate_until_idle(plan)
        while not self._stopping and more_ready(plan):
            await self._generate_until_idle(plan)

    async def _generate_until_idle(self, plan) -> None:
        pending: Request | None = None
        while True:
            self.fleet.changed.clear()
            if self._stopping:
                pending = None  # not started, so requested again when the run resumes
                self._retries.clear()
            elif pending is None:
                pending = self._due_retry() or next(plan, None)
            if pending is None and not self._inflight and not self._retries:
                break
            now = time.monotonic()
            server = None
            if pending is not None and self.admission.can_admit(pending.n):
                server = pick_server(self.fleet.servers, pending.n, now, avoid=pending.avoid)
            if server is not None:
                now_part, pending = take_for(pending, server)
                self._start(server, now_part)
                continue
            # Sleep until something changes: capacity freed, a server up, a retry or a breaker due.
            wakeups = [
                t
                for t in (
                    self._retries[0][0] if self._retries else None,
                    next_reopening(self.fleet.servers, now),
                )
                if t is not None
            ]
            timeout = max(min(wakeups) - now, 0.001) if wakeups else None
            try:
                await asyncio.wait_for(self.fleet.changed.wait(), timeout=timeout)
            except TimeoutError:
                pass
        await self._queue.join()

    def _due_retry(self) -> Request | None:
        if self._retries and self._retries[0][0] <= time.monotonic():
            return heapq.heappop(self._retries)[2]
        return None

    def _start(self, server: ServerState, request: Request) -> None:
        self.admission.reserve(request.n)
        server.request_started(request.n)
        self.metrics.inflight_requests.labels(server.url).inc()
        task = asyncio.create_task(self._request(server, request))
        self._inflight.add(task)

    async def _request(self, server: ServerState, request: Request) -> None:
        problem = request.problem
        s = self.sampling
        chat = s.api == "chat"
        body = request_body(
            s.model,
            request.n,
            problem_seed(s.seed, problem.task_id) + request.start,
            prompt=None if chat else problem.prompt,
            messages=chat_messages(problem, s.system_prompt) if chat else None,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            stop=list(s.stop),
        )
        url = server.url + ("/v1/chat/completions" if chat else "/v1/completions")
        # stop: the server applies only MAX_STOP_STRINGS; max_tokens caps every choice
        assembler = StreamAssembler(request.n, chat=chat, stop=s.stop, max_tokens=s.max_tokens)
        requested_at = time.time()
        tokens = self.metrics.generated_tokens.labels(server.url)

        def on_choice(choice: FinishedChoice) -> None:
            completion = extract_completion(problem, choice.text) if chat else choice.text
            sample = Sample(
                problem.task_id,
                request.start + choice.index,
                completion,
                choice.tokens,
                choice.finish_reason,
                server.url,
                requested_at,
                choice.first_token_at,
                choice.finished_at,
                response=choice.text if chat else None,
            )
            server.choice_finished()
            self.fleet.changed.set()
            self.store.stage_sample(sample)
            self.stats.samples_generated += 1
            self.metrics.samples_generated.inc()
            self._enqueue(sample)

        def on_chunks(k: int) -> None:
            tokens.inc(k)
            self.stats.tokens += k
            if self.progress is not None:
                self.progress.tokens(k)

        try:
            await stream_completion(self.session, url, body, assembler, on_choice, on_chunks, self._timeout)
            server.record_success()
            reported = credible_completion_tokens(assembler.usage, assembler.chunks, request.n, s.max_tokens)
            if reported > assembler.chunks:
                on_chunks(reported - assembler.chunks)  # chunks that carried several tokens
        except StreamError as exc:
            self._failed(server, request, assembler.unfinished(), exc)
        except Exception as exc:  # a bug of ours, not the server's: end the sweep, never leave a hole
            self._crash(exc)
        finally:
            server.request_ended(len(assembler.unfinished()))
            self.metrics.inflight_requests.labels(server.url).dec()
            # Off the in-flight set before waking the dispatcher (a done-callback would run
            # later, and the dispatcher would go back to sleep seeing this request still open).
            self._inflight.discard(asyncio.current_task())
            self.fleet.changed.set()

    def _failed(self, server: ServerState, request: Request, unfinished: list[int], exc: StreamError) -> None:
        """The request ended early: its unfinished samples are retried or recorded as failed;
        those that finished are stored already."""
        self.admission.release(len(unfinished))
        indices = [request.start + i for i in unfinished]
        task_id = request.problem.task_id
        now = time.monotonic()
        if exc.unauthorized:
            # Retrying cannot help: the run ends with one line (exit 2).
            self._crash(
                UnauthorizedError(
                    f"{server.url} refused our credentials ({exc}); check --api-key and --header"
                )
            )
            return
        if isinstance(exc, IgnoredNError):
            self._fall_back_to_one_per_request(server, request, indices)
            return
        self.metrics.generation_errors.labels(server.url).inc()
        if exc.connect_failed:
            # Nothing was sent: the server is down (or still loading), not the request at fault.
            self.fleet.mark_down(server)
            attempt = request.attempt
        else:
            attempt = request.attempt + 1
            if server.record_failure(now, exc.retry_after):
                log.warning(
                    "%s failed %d requests in a row; pausing it", server.url, server.consecutive_failures
                )
        if not indices:
            log.warning("%s: %s broke its stream after every sample finished (%s)", task_id, server.url, exc)
        elif exc.retryable and attempt <= self.options.retries:
            delay = backoff_seconds(
                attempt, self._rng.random()
            )  # a Retry-After pauses the server, not these samples
            log.warning(
                "%s: %s samples %s..%s failed on %s (%s); retrying in %.1f s",
                task_id,
                len(indices),
                indices[0],
                indices[-1],
                server.url,
                exc,
                delay,
            )
            self._retry(request, indices, attempt, now + delay, avoid=server.url)
        else:
            log.error("%s: %d samples could not be generated: %s", task_id, len(indices), exc)
            for index in indices:
                self.store.stage_failure(task_id, index, str(exc), attempt)

    def _fall_back_to_one_per_request(
        self, server: ServerState, request: Request, indices: list[int]
    ) -> None:
        """The server gave one choice where n were asked: from now on it gets one sample per
        request, and the samples it left out are asked for again at once, as no failure."""
        if server.mark_ignores_n():
            log.warning(
                "%s ignores n (one choice where %d were asked): one sample per request from now on",
                server.url,
                request.n,
            )
        self._retry(request, indices, request.attempt, time.monotonic(), avoid=None)

    def _retry(
        self, request: Request, indices: list[int], attempt: int, due: float, avoid: str | None
    ) -> None:
        for start, n in contiguous_runs(indices, self.options.request_n):
            self._retry_seq += 1
            retry = Request(request.problem, start, n, attempt, avoid=avoid)
            heapq.heappush(self._retries, (due, self._retry_seq, retry))

    def _crash(self, exc: Exception) -> None:
        """End the sweep with `exc` (raised by run()); what is stored stays, and resumes."""
        if self._crashed is None:
            self._crashed = exc
            self._stopping = True
            if self._work is not None:
                self._work.cancel()

    # -- verification ------------------------------------------------------------------------

    def _enqueue(self, sample: Sample) -> None:
        """To a sandbox, through the queue, unless an identical sample has a verdict already (it
        is reused at once) or is queued already (this one waits beside it, not in the queue
        behind everything else)."""
        known = self.verifier.known(sample.task_id, sample.completion)
        if known is not None:
            self._record(sample, known)
            self._release()
            return
        if self.verifier.dedup:
            key = (sample.task_id, sample.completion)
            if key in self._twins:
                self._twins[key].append(sample)
                return
            self._twins[key] = []
        self._queue.put_nowait(sample)
        self.metrics.queue_depth.set(self._queue.qsize())

    async def _verifier(self) -> None:
        while True:
            sample = await self._queue.get()
            self.metrics.queue_depth.set(self._queue.qsize())
            try:
                outcome = await self.verifier.verify(self.problems[sample.task_id], sample.completion)
                self._record(sample, outcome)
                self._release()
            finally:
                # Twins get the verdict now; if it could not be reused (a sandbox fault), they
                # queue for a sandbox of their own. Before task_done, so a drain waits for them.
                for twin in self._twins.pop((sample.task_id, sample.completion), ()):
                    self._enqueue(twin)
                self._queue.task_done()

    def _release(self) -> None:
        """A sample has its verdict: its queue slot may admit new work."""
        self.admission.release(1)
        self.fleet.changed.set()

    def _record(self, sample: Sample, outcome: Outcome) -> None:
        verdict = outcome.verdict.value
        self.store.stage_verdict(
            StoredVerdict(
                sample.task_id,
                sample.sample_index,
                verdict,
                outcome.detail,
                outcome.output,
                outcome.wall_s,
                outcome.backend,
                outcome.limits.to_dict(),
                outcome.cpu_s,
                outcome.reused,
            )
        )
        if outcome.reused:
            self.metrics.verify_dedup.inc()
        if outcome.verdict is Verdict.infra_error:  # not a verdict: out of pass@k, verified again on resume
            self.stats.infra_errors += 1
            self.metrics.infra_errors.inc()
        else:
            self.running.add(sample.task_id, verdict == "passed")
            self.stats.samples_verified += 1
            self.metrics.samples_verified.labels(verdict).inc()
        if not outcome.reused:
            self.metrics.verify_seconds.observe(outcome.wall_s)
        log.debug(
            "%s/%d %s in %.3f s (%s)",
            sample.task_id,
            sample.sample_index,
            verdict,
            outcome.wall_s,
            outcome.detail,
        )
        if self.progress is not None:
            self.progress.advance(1)

    def status(self) -> str:
        """Short live figures for the progress line."""
        p1 = self.running.scores([1]).get(1)
        return f"pass@1 {'-' if p1 is None else f'{p1:.3f}'}, queue {self._queue.qsize()}"

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.options.flush_interval_s)
            self.store.flush()
