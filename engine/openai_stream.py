"""Sans-IO assembly of an OpenAI-style completion stream into finished choices.

Fed the `data` payloads of one streaming response (from `engine.sse.SSEParser`), it
demultiplexes choices by `index` and hands back each choice the moment its `finish_reason`
arrives, while the others keep streaming. It understands vLLM's wire format (one choice per
chunk, a final `choices: []` usage chunk, `[DONE]`, in-band `{"error": ...}` events) and the
chat variant (`delta.content` instead of `text`).

The hot path: almost every chunk is one running choice in vLLM 0.32's exact layout
(`..."choices":[{"index":I,"text":"…","logprobs":null,"finish_reason":null,...}]...`). Such a
chunk is recognised by byte searches, and its text is kept as the raw JSON string content; a
choice's pieces are joined and decoded once, when it finishes (contents of JSON strings
concatenate into a JSON string). Every other chunk is parsed in full with orjson.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat

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


_CHOICE = b'"choices":[{"index":'
_TEXT = b',"text":"'
_TEXT_END = b'","logprobs":'  # cannot occur inside a JSON string: its quotes would be escaped
MAX_USAGE_TOKENS = 1 << 31  # more than any context length times any n a request may ask for
_RUNNING_TAIL = (
    b'","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]'
)

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
        "_prefix",
        "_indices",
        "_chunk_re",
        "_chunk_fixed",
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
        self._prefix: bytes | None = None  # a running chunk's bytes up to its index, once seen
        self._indices = {b"%d" % i: i for i in range(n)}  # unfinished choices, by their index's digits
        self._chunk_re: re.Pattern[bytes] | None = None  # feed_http_chunks' pattern, once the prefix is known
        self._chunk_fixed = 0  # bytes of one such HTTP chunk other than its size, index and text

    def unfinished(self) -> list[int]:
        return [i for i, done in enumerate(self._finished) if not done]

    def feed(self, payload: bytes) -> Iterator[FinishedChoice]:
        return self.feed_all((payload,))

    def feed_all(self, payloads: Iterable[bytes]) -> Iterator[FinishedChoice]:
        """Feed payloads in order, yielding each choice the moment it finishes (a generator:
        nothing is fed until it is iterated). A payload that breaks the protocol raises
        ProtocolError only after every choice finished before it was yielded: a caller that
        stores what it is given loses nothing to a later error in the same read."""
        parts, counts, first, indices = self._parts, self._counts, self._first, self._indices
        prefix = self._prefix
        skip = len(prefix) if prefix is not None else 0
        fast = 0
        for payload in payloads:
            if prefix is not None and payload.startswith(prefix):
                # A running chunk in vLLM's layout: the bytes before the index are the same in
                # every chunk of a response (id, created, model), so one comparison finds it.
                text = payload.find(_TEXT, skip, skip + 12)
                if text > 0:
                    index = indices.get(payload[skip:text])  # keys: the unfinished choices' indices
                    start = text + len(_TEXT)
                    end = payload.find(_TEXT_END, start)
                    if (
                        index is not None
                        and end > 0
                        and payload.startswith(_RUNNING_TAIL, end)
                        and payload.endswith(b"}")
                    ):
                        fast += 1
                        counts[index] += 1
                        if first[index] is None:
                            first[index] = self._clock()
                        if end > start:
                            parts[index].append(payload[start:end])
                        continue
            elif prefix is None and not self.chat:
                at = payload.find(_CHOICE)
                if at > 0 and payload.startswith(b'{"id":'):
                    prefix = self._prefix = payload[: at + len(_CHOICE)]
                    skip = len(prefix)
            self.chunks += fast
            fast = 0
            finished: list[FinishedChoice] = []
            try:
                self._feed_parsed(payload, finished)
            except StreamError:
                yield from finished  # the choices this payload finished before its error
                raise
            if finished:
                yield from finished
        self.chunks += fast

    def feed_http_chunks(self, block: bytes) -> bool:
        """The hottest path: `block` is whole HTTP/1.1 chunks of a chunked body (the caller's
        framing state is between chunks). When every chunk is one SSE event holding one running
        choice in this response's layout, all are taken in one regex pass and True is returned;
        otherwise nothing changes and False is returned (feed the block through ResponseReader
        and SSEParser then). What is taken is exactly what `feed_all` would take from those
        events, as tests/test_openai_stream.py checks."""
        pattern = self._chunk_re
        if pattern is None:
            if self._prefix is None:
                return False
            event_head = b"data: " + self._prefix
            pattern = self._chunk_re = re.compile(
                rb"([0-9a-fA-F]{1,6})\r\n"
                + re.escape(event_head)
                + rb'(\d{1,6}),"text":"([^"\\\n]*(?:\\.[^"\\\n]*)*)'
                + re.escape(_RUNNING_TAIL)
                + rb"\}\n\n\r\n"
            )
            self._chunk_fixed = len(event_head) + len(_TEXT) + len(_RUNNING_TAIL) + 3
        found = pattern.findall(block)
        if not found:
            return False
        sizes, digits, texts = zip(*found)
        fixed = self._chunk_fixed
        event_lengths = [fixed + a + b for a, b in zip(map(len, digits), map(len, texts))]
        # The matches tile the block exactly, each chunk's size is its event's length, and every
        # index is an unfinished choice's.
        if (
            sum(event_lengths) + sum(map(len, sizes)) + 4 * len(found) != len(block)
            or list(map(int, sizes, repeat(16))) != event_lengths
            or not self._indices.keys() >= set(digits)
        ):
            return False
        indices, counts, parts, first = self._indices, self._counts, self._parts, self._first
        now = None
        for key, text in zip(digits, texts):
            index = indices[key]
            counts[index] += 1
            if text:
                parts[index].append(text)
            if first[index] is None:
                first[index] = now = now or self._clock()
        self.chunks += len(found)
        return True

    def _feed_parsed(self, payload: bytes, finished: list[FinishedChoice]) -> None:
        """Parse one payload; the choices it finishes go to `finished` as they do."""
        if self.done:
            raise ProtocolError("data after [DONE]")
        if payload == b"[DONE]":
            self.done = True
            self._indices.clear()
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
            self._check_size(index, len(raw))
        try:  # invalid UTF-8, a lone surrogate or a bad escape: the choice stays unfinished (retried)
            whole = orjson.loads(b'"' + raw + b'"') if raw else ""
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"choice {index}: its text is not a valid JSON string") from exc
        self._finished[index] = True
        self._indices.pop(b"%d" % index, None)
        self._parts[index] = []
        text, reason = _apply_stop(whole, str(finish_reason), self.stop)
        return FinishedChoice(index, text, self._counts[index], reason, self._first[index], now)

    def _check_size(self, index: int, text_bytes: int) -> None:
        """Before a choice counts as finished: a server that ignored max_tokens gets it asked again."""
        allowed = self.max_tokens + CHUNK_SLACK
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
