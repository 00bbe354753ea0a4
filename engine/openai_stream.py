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

import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from engine.errors import HTTPStatusError, ProtocolError


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
_RUNNING_TAIL = b'","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]'


class StreamAssembler:
    __slots__ = ("n", "chat", "stop", "done", "usage", "chunks", "_parts", "_counts", "_first", "_finished", "_clock",
                 "_prefix")

    def __init__(self, n: int, chat: bool = False, clock=time.time, stop: Sequence[str] = ()):
        """`stop`: stop strings to apply here as vLLM would (text cut before the first one, finish
        reason "stop"), for those the server was not asked to apply."""
        self.n = n
        self.chat = chat
        self.stop = tuple(s for s in stop if s)
        self.done = False
        self.usage: dict | None = None
        self.chunks = 0  # choice chunks seen in total, for live token counting
        self._parts: list[list[bytes]] = [[] for _ in range(n)]  # raw JSON string contents
        self._counts = [0] * n
        self._first: list[float | None] = [None] * n
        self._finished = [False] * n
        self._clock = clock
        self._prefix: bytes | None = None  # a running chunk's bytes up to its index, once seen

    def unfinished(self) -> list[int]:
        return [i for i, done in enumerate(self._finished) if not done]

    def feed(self, payload: bytes) -> list[FinishedChoice]:
        prefix = self._prefix
        if prefix is not None and payload.startswith(prefix) and payload[-1:] == b"}":
            # The bytes before the index are the same in every chunk of a response (id, created,
            # model): one comparison instead of a search.
            digits = len(prefix)
            text = payload.find(_TEXT, digits, digits + 12)
            if text > 0:
                start = text + len(_TEXT)
                end = payload.find(_TEXT_END, start)
                if end > 0 and payload.startswith(_RUNNING_TAIL, end) and payload[digits:text].isdigit():
                    index = int(payload[digits:text])
                    if index < self.n and not self._finished[index] and not self.done:
                        self.chunks += 1
                        self._counts[index] += 1
                        if self._first[index] is None:
                            self._first[index] = self._clock()
                        if end > start:
                            self._parts[index].append(payload[start:end])
                        return []
        elif prefix is None and not self.chat:
            at = payload.find(_CHOICE)
            if at > 0 and payload.startswith(b'{"id":'):
                self._prefix = payload[: at + len(_CHOICE)]
                return self.feed(payload)
        return self._feed_parsed(payload)

    def _feed_parsed(self, payload: bytes) -> list[FinishedChoice]:
        if self.done:
            raise ProtocolError("data after [DONE]")
        if payload == b"[DONE]":
            self.done = True
            if not all(self._finished):
                raise ProtocolError(f"[DONE] before choices {self.unfinished()} finished")
            return []
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
            self.usage = usage
        finished: list[FinishedChoice] = []
        for choice in choices:
            done = self._choice(choice)
            if done is not None:
                finished.append(done)
        return finished

    def _choice(self, choice) -> FinishedChoice | None:
        try:
            index = choice["index"]
            if self.chat:
                text = choice["delta"].get("content") or ""
            else:
                text = choice["text"]
            finish_reason = choice.get("finish_reason")
        except (TypeError, KeyError, AttributeError) as exc:
            raise ProtocolError(f"malformed choice: {str(choice)[:80]}") from exc
        if not isinstance(index, int) or not 0 <= index < self.n or not isinstance(text, str):
            raise ProtocolError(f"choice index {index!r} outside 0..{self.n - 1} or text not a string")
        if self._finished[index]:
            raise ProtocolError(f"choice {index} continued after its finish_reason")
        self.chunks += 1
        now = self._clock()
        if self._first[index] is None:
            self._first[index] = now
        if text:
            self._parts[index].append(orjson.dumps(text)[1:-1])
        self._counts[index] += 1
        if finish_reason is None:
            return None
        self._finished[index] = True
        raw = b"".join(self._parts[index])
        self._parts[index] = []
        try:
            whole = orjson.loads(b'"' + raw + b'"') if raw else ""
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"choice {index}: its text is not a valid JSON string") from exc
        text, reason = _apply_stop(whole, str(finish_reason), self.stop)
        return FinishedChoice(index, text, self._counts[index], reason, self._first[index], now)


def _apply_stop(text: str, finish_reason: str, stop: tuple[str, ...]) -> tuple[str, str]:
    cut = min((i for i in map(text.find, stop) if i >= 0), default=-1)
    return (text, finish_reason) if cut < 0 else (text[:cut], "stop")


def _inband_error(error) -> HTTPStatusError:
    """vLLM reports engine-side failures inside a 200 stream as {"error": {...}}."""
    if not isinstance(error, dict):
        return HTTPStatusError(500, str(error)[:200])
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return HTTPStatusError(status, f"in-stream error: {str(error.get('message', ''))[:200]}")
