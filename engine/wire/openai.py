"""Sans-IO assembly of an OpenAI-style completion stream into finished choices.

Fed the `data` payloads of one streaming response (from `engine.wire.sse.SSEParser`), it
demultiplexes choices by `index` and hands back each choice the moment its `finish_reason`
arrives, while the others keep streaming. It understands vLLM's wire format (one choice per
chunk, a final `choices: []` usage chunk, `[DONE]`, in-band `{"error": ...}` events) and the
chat variant (`delta.content` instead of `text`).

This is the general, layered path: every payload is parsed in full with orjson. A choice's
text is kept as raw JSON string contents and decoded once, when it finishes (contents of JSON
strings concatenate into a JSON string), which is what lets `engine.wire.vllm_fast` hand over
running chunks it recognised by their bytes (`take_running`) without parsing them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import orjson

from engine.errors import HTTPStatusError, IgnoredNError, ProtocolError, StreamError


@dataclass(frozen=True, slots=True)
class FinishedChoice:
    index: int
    text: str
    tokens: int  # chunks received for this choice; vLLM sends one token per chunk, rarely more
    finish_reason: str
    first_token_at: float | None
    finished_at: float


MAX_USAGE_TOKENS = 1 << 31  # more than any context length times any n a request may ask for

# A finished choice is refused (and asked for again) beyond what max_tokens allows.
CHUNK_SLACK = 8  # chunks beyond max_tokens: an empty finishing chunk, a chat choice's role
TEXT_BYTES_PER_TOKEN = 256  # JSON-escaped text per token on average, ~10x a long code token


class StreamAssembler:
    __slots__ = (
        "n",
        "chat",
        "stop",
        "max_tokens",
        "done",
        "usage",
        "chunks",
        "_parts",
        "_counts",
        "_first",
        "_finished",
        "_clock",
        "_running",
    )

    def __init__(
        self,
        n: int,
        chat: bool = False,
        clock=time.time,
        stop: Sequence[str] = (),
        max_tokens: int | None = None,
    ):
        """`stop`: stop strings to apply here as vLLM would (text cut before the first one, finish
        reason "stop"), for those the server was not asked to apply. `max_tokens`: the request's,
        which caps every choice (CHUNK_SLACK, TEXT_BYTES_PER_TOKEN)."""
        self.n = n
        self.chat = chat
        self.stop = tuple(s for s in stop if s)
        self.max_tokens = max_tokens
        self.done = False
        self.usage: dict | None = None
        self.chunks = 0  # choice chunks seen in total, for live token counting
        self._parts: list[list[bytes]] = [[] for _ in range(n)]  # raw JSON string contents
        self._counts = [0] * n
        self._first: list[float | None] = [None] * n
        self._finished = [False] * n
        self._clock = clock
        self._running = {b"%d" % i: i for i in range(n)}  # unfinished choices, by their index's digits

    def unfinished(self) -> list[int]:
        return [i for i, done in enumerate(self._finished) if not done]

    def feed(self, payload: bytes) -> Iterator[FinishedChoice]:
        return self.feed_all((payload,))

    def feed_all(self, payloads: Iterable[bytes]) -> Iterator[FinishedChoice]:
        """Feed payloads in order, yielding each choice the moment it finishes (a generator:
        nothing is fed until it is iterated). A payload that breaks the protocol raises
        ProtocolError only after every choice finished before it was yielded: a caller that
        stores what it is given loses nothing to a later error in the same read."""
        for payload in payloads:
            finished: list[FinishedChoice] = []
            try:
                self._feed_parsed(payload, finished)
            except StreamError:
                yield from finished  # the choices this payload finished before its error
                raise
            if finished:
                yield from finished

    def take_running(self, digits: Sequence[bytes], texts: Sequence[bytes]) -> bool:
        """Take running chunks (one token each, no finish_reason) that a fast path recognised
        by their bytes: choice `digits[k]` (its index as decimal ASCII) got `texts[k]` (raw JSON
        string contents, undecoded). Returns False, changing nothing, unless every index is an
        unfinished choice's; then the chunks count exactly as `feed_all` would count them."""
        running = self._running
        if not running.keys() >= set(digits):
            return False
        counts, parts, first = self._counts, self._parts, self._first
        now = None
        for key, text in zip(digits, texts):
            index = running[key]
            counts[index] += 1
            if text:
                parts[index].append(text)
            if first[index] is None:
                first[index] = now = now or self._clock()
        self.chunks += len(digits)
        return True

    def _feed_parsed(self, payload: bytes, finished: list[FinishedChoice]) -> None:
        """Parse one payload; the choices it finishes go to `finished` as they do."""
        if self.done:
            raise ProtocolError("data after [DONE]")
        if payload == b"[DONE]":
            self.done = True
            self._running.clear()
            if self.n > 1 and self._finished[0] and not any(self._counts[1:]):
                raise IgnoredNError(f"the server answered with one choice where n={self.n} were asked")
            if not all(self._finished):
                raise ProtocolError(f"[DONE] before choices {self.unfinished()} finished")
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"chunk is not JSON: {payload[:80]!r}") from exc
        if not isinstance(chunk, dict):
            raise ProtocolError(f"chunk is not a JSON object: {payload[:80]!r}")
        if "error" in chunk:
            raise _inband_error(chunk["error"])
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise ProtocolError(f"chunk without choices: {payload[:80]!r}")
        usage = chunk.get("usage")
        if not choices and isinstance(usage, dict):
            self.usage = _checked_usage(usage)
        for choice in choices:
            done = self._choice(choice)
            if done is not None:
                finished.append(done)

    def _choice(self, choice) -> FinishedChoice | None:
        announcement = False
        try:
            index = choice["index"]
            if self.chat:
                delta = choice["delta"]
                text = delta.get("content") or ""
                # each chat choice opens with {"role": "assistant", "content": ""}: not a token
                announcement = "role" in delta and not text
            else:
                text = choice["text"]
            finish_reason = choice.get("finish_reason")
        except (TypeError, KeyError, AttributeError) as exc:
            raise ProtocolError(f"malformed choice: {str(choice)[:80]}") from exc
        if not isinstance(index, int) or not 0 <= index < self.n or not isinstance(text, str):
            raise ProtocolError(f"choice index {index!r} outside 0..{self.n - 1} or text not a string")
        if self._finished[index]:
            raise ProtocolError(f"choice {index} continued after its finish_reason")
        if announcement and finish_reason is None:
            return None
        self.chunks += 1
        now = self._clock()
        if self._first[index] is None:
            self._first[index] = now
        if text:
            self._parts[index].append(orjson.dumps(text)[1:-1])
        self._counts[index] += 1
        if finish_reason is None:
            return None
        raw = b"".join(self._parts[index])
        if self.max_tokens is not None:
            self._check_size(index, len(raw), self.max_tokens)
        try:  # invalid UTF-8, a lone surrogate or a bad escape: the choice stays unfinished (retried)
            whole = orjson.loads(b'"' + raw + b'"') if raw else ""
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"choice {index}: its text is not a valid JSON string") from exc
        self._finished[index] = True
        self._running.pop(b"%d" % index, None)
        self._parts[index] = []
        text, reason = _apply_stop(whole, str(finish_reason), self.stop)
        return FinishedChoice(index, text, self._counts[index], reason, self._first[index], now)

    def _check_size(self, index: int, text_bytes: int, max_tokens: int) -> None:
        """Before a choice counts as finished: a server that ignored max_tokens gets it asked again."""
        allowed = max_tokens + CHUNK_SLACK
        if self._counts[index] > allowed or text_bytes > allowed * TEXT_BYTES_PER_TOKEN:
            raise ProtocolError(
                f"choice {index}: {self._counts[index]} chunks, {text_bytes} bytes of text: more than max_tokens"
                f" {self.max_tokens} allows"
            )


def _apply_stop(text: str, finish_reason: str, stop: tuple[str, ...]) -> tuple[str, str]:
    cut = min((i for i in map(text.find, stop) if i >= 0), default=-1)
    return (text, finish_reason) if cut < 0 else (text[:cut], "stop")


def _checked_usage(usage: dict) -> dict:
    """A usage object whose token counts are plausible integers; anything else is a broken server."""
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = usage.get(key)
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_USAGE_TOKENS):
            raise ProtocolError(f"usage {key} is not a plausible token count: {str(value)[:40]}")
    return usage


def _inband_error(error) -> HTTPStatusError:
    """vLLM reports engine-side failures inside a 200 stream as {"error": {...}}."""
    if not isinstance(error, dict):
        return HTTPStatusError(500, str(error)[:200])
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return HTTPStatusError(status, f"in-stream error: {str(error.get('message', ''))[:200]}")
