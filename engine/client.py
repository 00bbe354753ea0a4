"""The streaming client: one OpenAI-compatible streaming request, on aiohttp.

Bytes go to the sans-IO `SSEParser`, payloads to the `StreamAssembler`, finished choices to
the caller's callback the moment they finish. Every transport failure becomes a `StreamError`,
after which the caller retries only the choices that had not finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import orjson

from engine.errors import HTTPStatusError, ProtocolError, StreamError
from engine.openai_stream import FinishedChoice, StreamAssembler
from engine.sse import SSEParser

MAX_ERROR_BODY = 4096
# vLLM 0.32 refuses more stop strings than OpenAI's API allows (HTTP 400, "List should have at
# most 4 items"): the first four go to the server, and StreamAssembler applies all of them.
MAX_STOP_STRINGS = 4


def completion_body(
    model: str, prompt: str, n: int, seed: int, *, temperature: float, top_p: float, max_tokens: int,
    stop: list[str],
) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "prompt": prompt,
            "n": n,
            "seed": seed,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "stop": stop[:MAX_STOP_STRINGS],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )


def timeout_for(idle_timeout: float, connect_timeout: float = 10.0) -> aiohttp.ClientTimeout:
    # aiohttp's default total=300 s would kill long streams: bound only connect and idle reads.
    return aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=idle_timeout)


async def stream_completion(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    assembler: StreamAssembler,
    on_choice: Callable[[FinishedChoice], None],
    on_chunks: Callable[[int], None],
    timeout: aiohttp.ClientTimeout,
) -> None:
    """Stream one request to its end. `on_chunks(k)` reports k more choice chunks as they arrive."""
    try:
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=timeout
        ) as response:
            if response.status != 200:
                raise HTTPStatusError(response.status, _error_message(await response.content.read(MAX_ERROR_BODY)))
            parser = SSEParser()
            counted = 0
            async for data in response.content.iter_any():
                for payload in parser.feed(data):
                    for choice in assembler.feed(payload):
                        on_choice(choice)
                if assembler.chunks != counted:
                    on_chunks(assembler.chunks - counted)
                    counted = assembler.chunks
            for payload in parser.close():
                for choice in assembler.feed(payload):
                    on_choice(choice)
            if not assembler.done:
                raise ProtocolError("stream ended before [DONE]")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise StreamError(_describe(exc)) from exc


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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no data within the idle timeout"
    return f"{type(exc).__name__}: {exc}"[:300]
