"""One simulated server's HTTP API (aiohttp): vLLM 0.32's OpenAI-compatible routes.

Handlers only translate: validation lives in `protocol`, bytes in `wire`, generation in
`gpu.batch`. A completion request becomes a `Job` of n sequences per prompt, a chat request a `Job`
of n sequences (its prompt is the chat template applied to the messages); the handler submits
it to the batch engine and waits for it to finish, while the engine writes a stream's events
to the connection as it goes. Both go through the same faults, batch and pacing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable

from aiohttp import HttpVersion11, web

from vllm_sim.api.protocol import (
    DEFAULT_MAX_TOKENS,
    APIError,
    ChatRequest,
    CompletionRequest,
    parse_chat_request,
    parse_completion_request,
)
from vllm_sim.api.server_metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from vllm_sim.api.server_metrics import ServerMetrics
from vllm_sim.api.wire import (
    DONE_EVENT,
    ChatChunkEncoder,
    ChunkEncoder,
    chat_completion_body,
    completion_body,
    error_body,
    in_band_error_event,
    models_body,
)
from vllm_sim.faults.injection import ServerFaults, StreamSabotage
from vllm_sim.faults.spec import HTTP_KINDS, FaultPlan
from vllm_sim.gpu.batch import BatchEngine, Job
from vllm_sim.gpu.plans import PlanCache
from vllm_sim.gpu.tokens import count_tokens
from vllm_sim.model import instruct
from vllm_sim.model.synthetic import SyntheticModel
from vllm_sim.settings import VLLM_VERSION, SimulatorConfig

log = logging.getLogger(__name__)

_JSON = "application/json"
_SSE = "text/event-stream; charset=utf-8"
_VARY = {"vary": "Origin"}


def system_fingerprint(config: SimulatorConfig) -> str:
    """Stable per model and seed, like vLLM's (which stays the same across restarts)."""
    digest = hashlib.blake2b(f"{config.model_name}\0{config.seed}".encode(), digest_size=4).hexdigest()
    return f"vllm-{VLLM_VERSION}-{digest}"


class SimulatedAPI:
    """The state behind one server's routes."""

    def __init__(
        self,
        config: SimulatorConfig,
        model: SyntheticModel,
        plans: PlanCache,
        faults: ServerFaults | None = None,
    ):
        self.config = config
        self.faults = faults  # None: no fault configured, nothing of `injection` runs
        self.model = model
        self.plans = plans
        self.rng = random.Random()  # request ids and unseeded samples: fresh randomness per server
        self.fingerprint = system_fingerprint(config)
        self.metrics = ServerMetrics(  # gauges read the engine when scraped
            config.model_name,
            running=lambda: len(self.engine.running),
            waiting=lambda: self.engine.num_waiting(),
            kv_usage=lambda: min(1.0, self.engine.kv_tokens() / config.kv_cache_tokens),
        )
        self.engine = BatchEngine(
            config.tokens_per_second, config.max_num_seqs, config.min_step_s, self.metrics, self.rng
        )
        if faults is not None:
            self.metrics.registry.register(faults.collector())

    def app(self) -> web.Application:
        guards = [_api_key_guard(self.config.api_key)] if self.config.api_key is not None else []
        app = web.Application(middlewares=[*guards, _fastapi_errors], client_max_size=16 << 20)
        app.router.add_get("/health", self.health)
        app.router.add_get("/ping", self.health)
        app.router.add_post("/ping", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/load", self.load)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        return app

    # -- small routes ----------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        if self.faults is not None and self.faults.degraded:
            return web.Response(status=503, headers=_VARY)  # vLLM's answer when its engine is dead
        return web.Response(headers=_VARY)

    async def version(self, request: web.Request) -> web.Response:
        return _json(b'{"version":"%s"}' % VLLM_VERSION.encode())

    async def models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        permission = f"modelperm-{self.rng.getrandbits(64):016x}"
        cfg = self.config
        return _json(models_body(cfg.model_name, created, cfg.root, cfg.max_model_len, permission))

    async def load(self, request: web.Request) -> web.Response:
        load = len(self.engine.running) + self.engine.num_waiting()
        return _json(b'{"server_load":%d}' % load)

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE, **_VARY}
        )

    # -- completions -----------------------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        cfg = self.config
        try:
            req = parse_completion_request(body, cfg.model_name, cfg.max_model_len, count_tokens)
        except APIError as exc:
            return await self._refuse(request, exc)
        return await self._serve(request, req.stream, lambda: self._job(request, req), completion_body)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        cfg = self.config
        try:
            req = parse_chat_request(body, cfg.model_name, cfg.max_model_len, instruct.prompt_tokens)
        except APIError as exc:
            return await self._refuse(request, exc)
        return await self._serve(
            request, req.stream, lambda: self._chat_job(request, req), chat_completion_body
        )

    async def _refuse(self, request: web.Request, exc: APIError) -> web.StreamResponse:
        if exc.in_band:
            return await self._in_band_error(request, exc)
        return _error(exc)

    async def _serve(
        self, request: web.Request, stream: bool, make_job: Callable[[], Job], make_body: Callable[..., bytes]
    ) -> web.StreamResponse:
        """A valid request from here on: its fault (if any), then the stream or the body."""
        fault: FaultPlan | None = None
        if self.faults is not None:
            if self.faults.failing:  # a degraded server: vLLM's handler of engine failures
                return web.Response(status=500, headers=_VARY)
            fault = self.faults.draw(stream)
            if fault is not None and fault.kind in HTTP_KINDS:
                return self.faults.http_error(fault)
        job = make_job()
        if stream:
            return await self._stream(request, job, fault)
        return await self._complete(job, make_body)

    def _job(self, request: web.Request, req: CompletionRequest) -> Job:
        request_id = f"cmpl-{self.rng.getrandbits(64):016x}"
        created = int(time.time())
        encoder = (
            ChunkEncoder(request_id, created, self.config.model_name, self.fingerprint)
            if req.stream
            else None
        )
        job = Job(
            request_id,
            created,
            encoder,
            request.transport,
            stream=req.stream,
            framed=request.version >= HttpVersion11,
            include_usage=req.include_usage,
            continuous=req.continuous_usage,
        )
        greedy = req.temperature == 0
        n = 1 if self.config.ignore_n else req.n
        for p, (prompt, count) in enumerate(zip(req.prompts, req.prompt_tokens)):
            key = prompt if isinstance(prompt, str) else "token-ids:" + ",".join(map(str, prompt))
            max_tokens = min(req.max_tokens or DEFAULT_MAX_TOKENS, self.config.max_model_len - count)
            job.prompt_tokens += count
            for j in range(n):
                plan = self.plans.get(
                    self.model.sample(key, self._seed(req.seed, j, greedy)),
                    req.stop,
                    req.include_stop_str_in_output,
                )
                job.add(p * n + j, plan, count, max_tokens)
        return job

    def _chat_job(self, request: web.Request, req: ChatRequest) -> Job:
        request_id = f"chatcmpl-{self.rng.getrandbits(64):016x}"
        created = int(time.time())
        model = self.config.model_name
        encoder = ChatChunkEncoder(request_id, created, model, self.fingerprint) if req.stream else None
        job = Job(
            request_id,
            created,
            encoder,
            request.transport,
            stream=req.stream,
            framed=request.version >= HttpVersion11,
            include_usage=req.include_usage,
            continuous=req.continuous_usage,
        )
        prompt_tokens = req.prompt_tokens
        room = self.config.max_model_len - prompt_tokens  # also chat's default: whatever the context leaves
        max_tokens = min(req.max_tokens or room, room)
        job.prompt_tokens = prompt_tokens
        greedy = req.temperature == 0
        n = 1 if self.config.ignore_n else req.n
        for j in range(n):
            plan = self.plans.get(
                self.model.chat_sample(req.messages, self._seed(req.seed, j, greedy)),
                req.stop,
                req.include_stop_str_in_output,
            )
            job.add(j, plan, prompt_tokens, max_tokens)
        if encoder is not None:
            usage = encoder.step_usage(prompt_tokens, 0) if req.continuous_usage else b""
            job.opening = [encoder.role_event(j, usage) for j in range(n)]
        return job

    def _seed(self, seed: int | None, child: int, greedy: bool) -> int | None:
        """vLLM gives child j of a seeded request the seed s + j; None means greedy."""
        if greedy:
            return None
        return seed + child if seed is not None else self.rng.getrandbits(63)

    async def _stream(
        self, request: web.Request, job: Job, fault: FaultPlan | None = None
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": _SSE, **_VARY})
        if job.framed:
            resp.enable_chunked_encoding()
        else:  # HTTP/1.0: no chunks, no length, so the body ends when the connection does (as with h11)
            resp.force_close()
        try:
            await resp.prepare(request)  # sends the headers now; the engine writes the events
        except ConnectionError:
            return resp  # the client left before we answered; aiohttp drops the connection
        if fault is None:
            await self._run(job)
            return resp  # aiohttp ends the chunked body (or finds the connection gone)
        assert self.faults is not None
        sabotage = StreamSabotage(fault, self.faults, job, lambda: self.engine.cancel(job))
        await sabotage.before_generation()
        await self._run(job)
        await sabotage.settled()
        return resp

    async def _complete(self, job: Job, make_body: Callable[..., bytes]) -> web.Response:
        await self._run(job)
        if job.aborted:
            raise web.HTTPServiceUnavailable()
        body = make_body(
            job.request_id,
            job.created,
            self.config.model_name,
            self.fingerprint,
            job.choices,
            job.prompt_tokens,
            job.completion_tokens,
        )
        return _json(body)

    async def _run(self, job: Job) -> None:
        self.engine.submit(job)
        try:
            await job.done
        except asyncio.CancelledError:
            self.engine.cancel(job)
            raise

    async def _in_band_error(self, request: web.Request, exc: APIError) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": _SSE, **_VARY})
        try:
            await resp.prepare(request)
            await resp.write(in_band_error_event(exc.message, exc.type, exc.param, exc.status) + DONE_EVENT)
        except ConnectionError:
            pass  # the client left; aiohttp drops the connection
        return resp


@web.middleware
async def _fastapi_errors(request: web.Request, handler) -> web.StreamResponse:
    """Unknown routes and methods answer as FastAPI does, not with aiohttp's text pages."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _json(b'{"detail":"Not Found"}', status=404)
    except web.HTTPMethodNotAllowed:
        return _json(b'{"detail":"Method Not Allowed"}', status=405)


def _api_key_guard(key: str):
    """vLLM's AuthenticationMiddleware: paths under /v1 need `Authorization: Bearer <key>`
    (scheme case-insensitive), else 401 {"error": "Unauthorized"}; /health, /metrics stay open."""
    expected = hashlib.sha256(key.encode()).digest()

    @web.middleware
    async def guard(request: web.Request, handler) -> web.StreamResponse:
        if request.method != "OPTIONS" and request.path.startswith("/v1"):
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            given = hashlib.sha256(token.encode()).digest()
            if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
                return _json(b'{"error":"Unauthorized"}', status=401)
        return await handler(request)

    return guard


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": _JSON, **_VARY})


def _error(exc: APIError) -> web.Response:
    return _json(error_body(exc.message, exc.type, exc.param, exc.status), status=exc.status)
