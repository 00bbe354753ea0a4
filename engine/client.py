"""The streaming client: one OpenAI-compatible streaming request.

The only I/O around `engine.wire`: bytes go to the sans-IO `ResponseReader` (HTTP/1.1 framing),
then `SSEParser`, payloads to the `StreamAssembler`, finished choices to the caller's callback
the moment they finish, all inside the transport's `data_received`. A sweep reads ~40k tokens/s,
each its own HTTP chunk and SSE event, and this path is what the client's CPU goes to
(bench/stream.py measures it): `VllmFastPath` takes vLLM's running chunks before the layered
readers see them. Every transport failure becomes a `StreamError`, after which the caller
retries only the choices that had not finished.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import aiohttp
import orjson

from engine.config import DEFAULT_REQUEST_DEADLINE_S
from engine.errors import HTTPStatusError, ProtocolError, StreamError
from engine.wire.http11 import MAX_HEAD_BYTES, ResponseReader
from engine.wire.openai import CHUNK_SLACK, FinishedChoice, StreamAssembler
from engine.wire.sse import SSEParser
from engine.wire.vllm_fast import VllmFastPath

MAX_ERROR_BODY = 4096
# vLLM 0.32 refuses more stop strings than OpenAI's API allows (HTTP 400, "List should have at
# most 4 items"): the first four go to the server, and StreamAssembler applies all of them.
MAX_STOP_STRINGS = 4

# What a server can make one request cost, whatever it sends (see README, "A hostile server"); the
# whole response's deadline is engine.config's DEFAULT_REQUEST_DEADLINE_S.
MAX_RETRY_AFTER_S = (
    60.0  # a server's Retry-After pauses it at most as long as the circuit breaker's longest pause
)
# vLLM sends ~300 bytes of JSON per token chunk; a response more than 3x that per token of max_tokens
# (plus a few chunks per choice: role, finish, usage) is not streaming tokens.
WIRE_BYTES_PER_TOKEN = 1024
TOKENS_IF_UNCAPPED = 16384  # a request without max_tokens is capped as if it asked for this many
TOO_LARGE = "response larger than its max_tokens allows (a server streaming without end?)"


def request_body(
    model: str,
    n: int,
    seed: int,
    *,
    prompt: str | None = None,
    messages: list[dict] | None = None,
    temperature: float,
    top_p: float,
    max_tokens: int,
    stop: list[str],
) -> bytes:
    """A streaming /v1/completions body (`prompt`) or /v1/chat/completions body (`messages`)."""
    body: dict[str, object] = {"model": model}
    body.update({"prompt": prompt} if messages is None else {"messages": messages})
    body.update(
        n=n,
        seed=seed,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    if stop:
        body["stop"] = stop[:MAX_STOP_STRINGS]
    return orjson.dumps(body)


def timeout_for(
    idle_timeout: float, deadline: float | None = DEFAULT_REQUEST_DEADLINE_S, connect_timeout: float = 10.0
) -> aiohttp.ClientTimeout:
    """`total` is the whole request's deadline: aiohttp's default (300 s) would kill long streams,
    none at all lets a server that trickles bytes (or 100 Continue) hold a request forever."""
    return aiohttp.ClientTimeout(total=deadline, sock_connect=connect_timeout, sock_read=idle_timeout)


def response_byte_cap(n: int, max_tokens: int | None) -> int:
    """Bytes one streaming response of n choices may take on the wire (head and framing included)."""
    return n * ((max_tokens or TOKENS_IF_UNCAPPED) + CHUNK_SLACK) * WIRE_BYTES_PER_TOKEN + MAX_HEAD_BYTES


def credible_completion_tokens(usage: dict | None, chunks: int, n: int, max_tokens: int | None) -> int:
    """Completion tokens of a response: the server's usage count where the stream bears it out
    (at least one token per chunk received, at most max_tokens per choice), else the chunks."""
    reported = (usage or {}).get("completion_tokens")
    ceiling = n * (max_tokens or TOKENS_IF_UNCAPPED)
    if type(reported) is int and chunks <= reported <= ceiling:
        return reported
    return chunks


async def stream_completion(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    assembler: StreamAssembler,
    on_choice: Callable[[FinishedChoice], None],
    on_chunks: Callable[[int], None],
    timeout: aiohttp.ClientTimeout,
) -> None:
    """Stream one request to its end. `on_chunks(k)` reports k more choice chunks as they arrive.

    Plain-HTTP servers (every vLLM of a fleet) are read by `_StreamProtocol` straight off an
    asyncio transport, with no per-chunk work outside `ResponseReader`, `SSEParser` and the
    assembler; anything else (https) goes through aiohttp's `session`."""
    if not url.startswith("http://"):
        return await _stream_aiohttp(session, url, body, assembler, on_choice, on_chunks, timeout)
    target = urlsplit(url)
    if target.hostname is None:
        raise StreamError(f"bad server URL {url!r}")
    loop = asyncio.get_running_loop()
    protocol = _StreamProtocol(loop, assembler, on_choice, on_chunks, timeout.sock_read, timeout.total)
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: protocol, target.hostname, target.port or 80), timeout.sock_connect
        )
    except OSError as exc:  # refused, unreachable: nothing was sent
        raise StreamError(_describe(exc), connect_failed=True) from exc
    except TimeoutError as exc:
        raise StreamError("no connection within the connect timeout", connect_failed=True) from exc
    ok = False
    try:
        # The server may have closed the connection already (it accepted, then went down): the
        # protocol then holds the error, and writing to its closed transport would raise.
        if protocol.finished.done():
            await protocol.finished
        host = target.netloc.rsplit("@", 1)[-1]
        transport.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n%s\r\n%s"
            % (
                (target.path or "/").encode() + (b"?" + target.query.encode() if target.query else b""),
                host.encode("idna"),
                len(body),
                _header_lines(session.headers),
                body,
            )
        )
        await protocol.finished
        ok = True
    finally:
        protocol.stop_timer()
        if ok:
            transport.close()
        else:
            transport.abort()  # cancelled or failed: drop the connection at once


class _StreamProtocol(asyncio.Protocol):
    """One request on its own connection: response bytes -> body -> SSE payloads -> choices,
    synchronously inside `data_received`. `finished` resolves at the end of a complete stream
    or with the error that ended it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        assembler: StreamAssembler,
        on_choice: Callable[[FinishedChoice], None],
        on_chunks: Callable[[int], None],
        idle_timeout: float | None,
        deadline: float | None = None,
    ):
        self.loop = loop
        self.finished: asyncio.Future[None] = loop.create_future()
        self.assembler = assembler
        self.fast = VllmFastPath(assembler)
        self.delivery = _Delivery(self.fast, on_choice, on_chunks)
        self.reader = ResponseReader()
        self.parser = SSEParser()
        self.budget = response_byte_cap(assembler.n, assembler.max_tokens)  # bytes it may still take
        self.error_body = b""
        self.idle_timeout = idle_timeout
        self.deadline = deadline  # seconds from connecting to the response's end
        self.last_data = loop.time()
        self.timer: asyncio.TimerHandle | None = None
        self.deadline_timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.idle_timeout:
            self.timer = self.loop.call_later(self.idle_timeout, self._check_idle)
        if self.deadline:
            self.deadline_timer = self.loop.call_later(self.deadline, self._expire)

    def data_received(self, data: bytes) -> None:
        if self.finished.done():
            return
        self.last_data = self.loop.time()
        self.budget -= len(data)
        try:
            if self.budget < 0:
                raise ProtocolError(TOO_LARGE)
            if self.reader.status == 200 and self.reader.between_chunks and self.parser.idle:
                data = self.fast.take_chunks(data)  # what it leaves goes the layered way
                if not data:
                    self.delivery.count_chunks()
                    return
            body = self.reader.feed(data)
            if self.reader.status != 200:
                if self.reader.status is not None:
                    self._error_status(body)
                return
            if body:
                self.delivery.feed(self.parser.feed(body))
            if self.reader.done:
                self._end()
        except Exception as exc:  # a StreamError, or a callback's own failure: the caller gets it
            self._fail(exc)

    def eof_received(self) -> bool:
        self._closed(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed(exc)

    def _closed(self, exc: Exception | None) -> None:
        if self.finished.done():
            return
        try:
            self.reader.close()
        except ProtocolError as cut_short:  # the connection's own error says more, if it has one
            self._fail(StreamError(_describe(exc)) if exc is not None else cut_short)
            return
        try:
            if self.reader.status != 200:
                self._error_status(b"")
            else:
                self._end()
        except Exception as error:
            self._fail(error)

    def _error_status(self, body: bytes) -> None:
        self.error_body = (self.error_body + body)[:MAX_ERROR_BODY]
        if self.reader.done or len(self.error_body) >= MAX_ERROR_BODY:
            raise HTTPStatusError(
                self.reader.status or 0,
                _error_message(self.error_body),
                retry_after=_retry_after(self.reader.headers.get("retry-after")),
            )

    def _end(self) -> None:
        self.delivery.feed(self.parser.close())
        if not self.assembler.done:
            raise ProtocolError("stream ended before [DONE]")
        if not self.finished.done():
            self.finished.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if not self.finished.done():
            self.finished.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _check_idle(self) -> None:
        idle = self.loop.time() - self.last_data
        if self.finished.done() or self.idle_timeout is None:
            return
        if idle >= self.idle_timeout:
            self._fail(StreamError("no data within the idle timeout"))
        else:
            self.timer = self.loop.call_later(self.idle_timeout - idle, self._check_idle)

    def _expire(self) -> None:
        self._fail(StreamError(_past_deadline(self.deadline)))

    def stop_timer(self) -> None:
        for timer in (self.timer, self.deadline_timer):
            if timer is not None:
                timer.cancel()


async def _stream_aiohttp(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    assembler: StreamAssembler,
    on_choice: Callable[[FinishedChoice], None],
    on_chunks: Callable[[int], None],
    timeout: aiohttp.ClientTimeout,
) -> None:
    try:
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout
        ) as response:
            if response.status != 200:
                raise HTTPStatusError(
                    response.status,
                    _error_message(await response.content.read(MAX_ERROR_BODY)),
                    retry_after=_retry_after(response.headers.get("Retry-After")),
                )
            parser = SSEParser()
            delivery = _Delivery(VllmFastPath(assembler), on_choice, on_chunks)
            budget = response_byte_cap(assembler.n, assembler.max_tokens)
            async for data in response.content.iter_any():
                budget -= len(data)
                if budget < 0:
                    raise ProtocolError(TOO_LARGE)
                delivery.feed(parser.feed(data))
            delivery.feed(parser.close())
            if not assembler.done:
                raise ProtocolError("stream ended before [DONE]")
    except aiohttp.ClientConnectorError as exc:
        raise StreamError(_describe(exc), connect_failed=True) from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise StreamError(_describe(exc)) from exc


class _Delivery:
    """Hands the caller each finished choice the moment it finishes, and counts choice chunks,
    also when a later payload of the same read breaks the stream: what finished is never lost."""

    __slots__ = ("fast", "assembler", "on_choice", "on_chunks", "counted")

    def __init__(
        self,
        fast: VllmFastPath,
        on_choice: Callable[[FinishedChoice], None],
        on_chunks: Callable[[int], None],
    ):
        self.fast = fast
        self.assembler = fast.assembler
        self.on_choice = on_choice
        self.on_chunks = on_chunks
        self.counted = 0

    def feed(self, payloads: Iterable[bytes]) -> None:
        try:
            for choice in self.fast.feed_events(payloads):
                self.on_choice(choice)
        finally:
            self.count_chunks()

    def count_chunks(self) -> None:
        chunks = self.assembler.chunks
        if chunks != self.counted:
            self.on_chunks(chunks - self.counted)
            self.counted = chunks


def _header_lines(headers) -> bytes:
    """The session's own headers (--api-key, --header: checked by the CLI) for the raw path."""
    lines = [] if "User-Agent" in headers else [b"User-Agent: engine\r\n"]
    lines += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items()]
    return b"".join(lines)


def _error_message(body: bytes) -> str:
    """vLLM's error envelope is {"error": {"message": ...}}; FastAPI's 404 is {"detail": ...}."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:200] or "(empty body)"
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:300]
        if "detail" in parsed:
            return str(parsed["detail"])[:300]
    return str(parsed)[:200]


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds or as an HTTP date (RFC 9110), within [0, MAX_RETRY_AFTER_S];
    None when absent or not a number (inf, nan) nor a date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


def _past_deadline(deadline: float | None) -> str:
    return f"no complete response within the request deadline ({deadline:g} s, --request-timeout)"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no data within the idle timeout"
    return f"{type(exc).__name__}: {exc}"[:300]
