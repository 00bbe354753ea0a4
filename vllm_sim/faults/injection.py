"""Carrying faults out: per server (`ServerFaults`) and per stream (`StreamSabotage`); the
fleet's scheduled events are in `controller`. What the faults are and how they are drawn
lives in `spec`.

Nothing here runs when no fault is configured: a server without faults has `faults=None`, and
a request that draws no fault is served exactly as before. A sabotaged stream gets a stand-in
for its transport (`_SabotagedTransport`) that the batch engine writes to as to any other; it
lets events through until the fault's moment, then resets, cuts, stalls, corrupts or ends the
stream. A stall looks to the engine like a client that stopped reading (a full write buffer),
so generation for that request pauses, as the rest of the batch goes on.

Every injected fault is logged at INFO and counted once, in `sim_faults_injected_total{kind}`
on the server's /metrics (counts survive the server's restarts; vLLM's own metrics do not).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client.core import CounterMetricFamily

from vllm_sim.api.wire import DONE_EVENT, error_body, http_chunk, in_band_error_event
from vllm_sim.faults.spec import KINDS, FaultPlan, FaultSpec
from vllm_sim.gpu.batch import Connection, Job

log = logging.getLogger("vllm_sim.faults")  # one logger for every injected fault

_JSON = "application/json"
_VARY = {"vary": "Origin"}
_FULL = 1 << 62  # the write-buffer size a stalled stream reports: the engine pauses it

INBAND_MESSAGE = "simulated fault: the engine failed while generating (engine simulate --faults)"
_ALTERS = ("bad_index", "bad_utf8", "surrogate")  # kinds that alter the next choice event
_FINISHING = b'"finish_reason":"'  # in a choice event: that choice finishes here (running: null)
_CHOICE_EVENT = b'"choices":[{'
_USAGE_EVENT = b'"choices":[]'
_ABSURD_USAGE = b'"completion_tokens":18446744073709551615'
_TEXT_OPENING = re.compile(rb'"(?:text|content)":"')


class ServerFaults:
    """One server's faults: request draws, counts, degraded state. Outlives the server's restarts."""

    def __init__(self, spec: FaultSpec, seed: int = 0, index: int = 0):
        self.spec = spec
        self.seed = seed
        self.index = index
        self.url = f"server{index}"  # for log lines; the server sets its URL when it listens
        self.requests = 0  # completion and chat requests drawn for so far
        self.counts = dict.fromkeys(KINDS, 0)
        self.degraded = 0  # open degrade windows: /health answers 503
        self.failing = 0  # open degrade windows with `errors`: completions answer 500
        self.on_kill: Callable[[float], None] | None = None  # set by the fleet's controller

    def draw(self, stream: bool) -> FaultPlan | None:
        request = self.requests
        self.requests += 1
        return self.spec.draw(self.seed, self.index, request, stream)

    def record(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        log.info("fault %s on server%d (%s): %s", kind, self.index, self.url, detail)

    def collector(self) -> _FaultCollector:
        return _FaultCollector(self)

    # -- responses -------------------------------------------------------------------------------

    def http_error(self, plan: FaultPlan) -> web.Response:
        """The error response of an http* fault, counted."""
        headers = dict(_VARY)
        if plan.retry_after is not None:
            headers["Retry-After"] = str(plan.retry_after)
        if plan.kind == "http500":
            self.record("http500", f"500 before streaming, {plan.variant} body")
            if plan.variant == "plain":  # Starlette's ServerErrorMiddleware under uvicorn
                return web.Response(
                    body=b"Internal Server Error",
                    status=500,
                    headers={"Content-Type": "text/plain; charset=utf-8", **headers},
                )
            if plan.variant == "json":
                body = error_body("simulated fault: internal server error", "InternalServerError", None, 500)
                return web.Response(body=body, status=500, headers={"Content-Type": _JSON, **headers})
            return web.Response(status=500, headers=headers)  # vLLM's handler for engine failures
        if plan.kind == "http503":
            self.record("http503", "503 before streaming" + _retry_note(plan))
            body = error_body(
                "simulated fault: the server is overloaded or down for maintenance; retry later",
                "ServiceUnavailableError",
                None,
                503,
            )
            return web.Response(body=body, status=503, headers={"Content-Type": _JSON, **headers})
        self.record("http429", "429 before streaming" + _retry_note(plan))
        body = error_body(
            f"simulated fault: too many requests; retry after {plan.retry_after} s",
            "RateLimitError",
            None,
            429,
        )
        return web.Response(body=body, status=429, headers={"Content-Type": _JSON, **headers})


def _retry_note(plan: FaultPlan) -> str:
    return "" if plan.retry_after is None else f", Retry-After: {plan.retry_after}"


class _FaultCollector:
    """`sim_faults_injected_total{kind}`, read from the counts when scraped."""

    def __init__(self, faults: ServerFaults):
        self._faults = faults

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "sim_faults_injected", "Faults injected by engine simulate --faults, by kind.", labels=["kind"]
        )
        for kind, count in self._faults.counts.items():
            family.add_metric([kind], count)
        yield family


class StreamSabotage:
    """One streaming request's fault, from the headers to the end of the response.

        sabotage = StreamSabotage(plan, faults, job, end_job)   # before the job is submitted
        await sabotage.before_generation()                      # slow_first waits here
        ... the engine generates, writing to job.transport ...
        await sabotage.settled()                                # a stall's held bytes are out

    `end_job` stops generation for the job, so that its handler ends the response as usual.
    """

    def __init__(self, plan: FaultPlan, faults: ServerFaults, job: Job, end_job: Callable[[], None]):
        self.plan = plan
        self._faults = faults
        self._job = job
        self._end_job = end_job
        self._transport: _SabotagedTransport | None = None
        if plan.kind != "slow_first" and job.transport is not None:
            self._transport = _SabotagedTransport(self, job.transport, job.framed)
            job.transport = self._transport

    async def before_generation(self) -> None:
        if self.plan.kind == "slow_first":
            self._record(f"nothing for {self.plan.seconds:g} s before the first token")
            await asyncio.sleep(self.plan.seconds)

    async def settled(self) -> None:
        if self._transport is not None:
            await self._transport.idle.wait()

    def _record(self, detail: str) -> None:
        self._faults.record(self.plan.kind, f"{self._job.request_id}: {detail}")


class _SabotagedTransport:
    """Stands in for a streaming request's transport and sabotages its output once."""

    def __init__(self, sabotage: StreamSabotage, transport: Connection, framed: bool):
        self._s = sabotage
        self._t = transport
        self._framed = framed
        self._armed = True  # the fault has not happened yet
        self._dead = False  # after reset, cut, inband, kill, or a stall that closed: drop writes
        self._held: list[bytes] = []  # a stall's output, sent when it ends
        self._stalled = False
        self._timer: asyncio.TimerHandle | None = None
        self._events = 0  # events let through so far
        self._last = b""  # the last JSON event let through, for `truncated`
        self._last_finishing = b""  # the last event let through that finished a choice, for `dup`
        self._window: list[bytes] = []  # with `before=K`: the last events, held until [DONE] comes
        self.idle = asyncio.Event()  # nothing held
        self.idle.set()

    # -- the transport interface the batch engine uses -------------------------------------------

    def write(self, data: bytes) -> None:
        if self._dead:
            return
        if self._stalled:
            self._held.append(data)
            return
        if not self._armed:
            self._t.write(data)
            return
        events = self._split(data)
        before = self._s.plan.before
        if before is not None:
            self._write_from_the_end(events, before)
            return
        after = self._s.plan.after
        for i, event in enumerate(events):
            if (self._events + i >= after and self._ready(event)) or self._payload(event) == DONE_EVENT:
                self._let_through(events[:i])
                self._armed = False
                self._fire(events[i:])
                return
        self._let_through(events)

    def _write_from_the_end(self, events: list[bytes], before: int) -> None:
        """`before=K`: hold the last K events back; at [DONE], fire K events before it."""
        window = self._window
        window += events
        done = next((i for i, e in enumerate(window) if self._payload(e) == DONE_EVENT), None)
        if done is None:
            keep = len(window) - before
            if keep > 0:
                self._let_through(window[:keep])
                del window[:keep]
            return
        at = max(0, done - before)
        self._let_through(window[:at])
        self._armed = False
        self._fire(window[at:])
        self._window = []

    def _let_through(self, events: list[bytes]) -> None:
        if not events:
            return
        for event in events:
            self._events += 1
            self._last = event
            if _FINISHING in event:
                self._last_finishing = event
        self._t.write(b"".join(events))

    def _ready(self, event: bytes) -> bool:
        """Whether the fault may happen before `event`: the kinds that alter an event wait for
        one they can alter, or the end of the choices."""
        kind = self._s.plan.kind
        if kind == "dup":
            return _FINISHING in event or _USAGE_EVENT in event
        if kind in _ALTERS:
            return _CHOICE_EVENT in event or _USAGE_EVENT in event
        if kind == "usage":
            return _USAGE_EVENT in event
        return True

    def is_closing(self) -> bool:
        closing = self._t.is_closing()
        if closing and self._stalled:  # the client left during a stall: nothing more to hold
            self._finish()
        return closing

    def get_write_buffer_size(self) -> int:
        return _FULL if self._stalled else self._t.get_write_buffer_size()

    def abort(self) -> None:
        self._finish()
        self._t.abort()

    def close(self) -> None:
        self._finish()
        self._t.close()

    def __getattr__(self, name: str):
        return getattr(self._t, name)

    # -- the fault -------------------------------------------------------------------------------

    def _fire(self, rest: list[bytes]) -> None:
        plan, s = self._s.plan, self._s
        n = self._events
        if plan.kind == "reset":
            s._record(f"TCP reset after {n} events")
            self._reset()
        elif plan.kind == "cut" and plan.variant == "close":
            s._record(f"connection closed after {n} events, the response unfinished")
            self._dead = True
            self._t.close()  # FIN: the chunked body never ends
        elif plan.kind == "cut":
            s._record(f"response ended after {n} events, without [DONE]")
            self._dead = True
            s._end_job()
        elif plan.kind == "inband":
            s._record(f"in-band error event after {n} events")
            error = in_band_error_event(INBAND_MESSAGE, "InternalServerError", None, 500)
            self._t.write(self._frame(error) + self._frame(DONE_EVENT))
            self._dead = True
            s._end_job()
        elif plan.kind == "malformed":
            s._record(f"{plan.variant} event after {n} events")
            self._t.write(self._frame(self._malformed(rest)) + b"".join(rest))
        elif plan.kind == "stall":
            then = "close" if plan.variant == "close" else "go on"
            s._record(f"nothing for {plan.seconds:g} s after {n} events, then {then}")
            self._stalled = True
            self._held = list(rest)
            self.idle.clear()
            self._timer = asyncio.get_running_loop().call_later(plan.seconds, self._end_stall)
        elif plan.kind in ("dup", "usage", *_ALTERS):
            self._alter(rest)
        elif plan.kind == "kill":
            s._record(f"server killed after {n} events of this stream, down for {plan.seconds:g} s")
            self._dead = True
            self._t.abort()
            on_kill = s._faults.on_kill
            if on_kill is not None:
                on_kill(plan.seconds)
        else:  # pragma: no cover - the spec parser admits no other kind here
            raise AssertionError(plan.kind)

    def _alter(self, rest: list[bytes]) -> None:
        """dup, bad_index, bad_utf8, surrogate, usage: one event sent twice or altered, then the
        rest of the stream. With no event of the kind left, the last finishing event is used."""
        kind, s = self._s.plan.kind, self._s
        wanted = {"dup": _FINISHING, "usage": _USAGE_EVENT}.get(kind, _CHOICE_EVENT)
        at = next((i for i, e in enumerate(rest) if wanted in e), None)
        again = at is None and kind != "usage"  # the last finishing event, sent again (altered)
        if again:
            rest, at = [self._last_finishing, *rest], 0
        if at is None or not rest[at]:
            s._record("nothing to alter: the stream had no such event")
            self._t.write(b"".join(rest))
            return
        event = rest[at]
        if kind == "dup":
            altered = [event] if again else [event, event]
        else:
            altered = [self._frame(altered_event(kind, self._payload(event)))]
        s._record(f"{kind}: event {self._events + at + 1} altered")
        self._t.write(b"".join([*rest[:at], *altered, *rest[at + 1 :]]))

    def _end_stall(self) -> None:
        self._timer = None
        held, self._held, self._stalled = self._held, [], False
        if not self._t.is_closing():
            if self._s.plan.variant == "close":
                self._dead = True
                self._t.close()  # FIN with the chunked body unfinished
            else:
                self._t.write(b"".join(held))
        self.idle.set()

    def _reset(self) -> None:
        """Abort with SO_LINGER 0, so the peer sees RST (a plain close sends FIN)."""
        self._dead = True
        sock = self._t.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._t.abort()

    def _finish(self) -> None:
        self._dead = True
        self._held.clear()
        self._stalled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.idle.set()

    # -- bytes -----------------------------------------------------------------------------------

    def _split(self, data: bytes) -> list[bytes]:
        """The events in one write, each with its framing (JSON holds no raw newlines)."""
        end = b"\n\n\r\n" if self._framed else b"\n\n"
        parts = data.split(end)
        return [p + end for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])

    def _payload(self, event: bytes) -> bytes:
        if self._framed:
            return event.partition(b"\r\n")[2][:-2]
        return event

    def _frame(self, event: bytes) -> bytes:
        return http_chunk(event) if self._framed else event

    def _malformed(self, rest: list[bytes]) -> bytes:
        plan = self._s.plan
        if plan.variant != "truncated":
            return b"data: " + plan.noise + b"\n\n"
        event = self._payload(rest[0]) if rest else b""
        if not event.startswith(b"data: {"):
            event = self._payload(self._last)
        body = event[len(b"data: ") : -2]
        return b"data: " + body[: max(1, len(body) // 2)] + b"\n\n"  # a proper prefix of an object


def altered_event(kind: str, event: bytes) -> bytes:
    """One SSE event (`data: {...}\n\n`) as a broken server would send it."""
    if kind == "bad_index":
        return re.sub(rb'"index":\d+', b'"index":1000000', event, count=1)
    if kind == "usage":
        return re.sub(rb'"completion_tokens":\d+', _ABSURD_USAGE, event, count=1)
    insert = b"\xff\xfe" if kind == "bad_utf8" else b"\\ud800"  # raw bytes / a JSON escape
    return _TEXT_OPENING.sub(lambda m: m.group(0) + insert, event, count=1)
