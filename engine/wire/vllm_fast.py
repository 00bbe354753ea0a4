"""The vLLM fast path: running token chunks recognised by their bytes, without parsing them.

Almost every chunk of a vLLM 0.32 completion stream is one running choice in one exact layout,
each its own SSE event and its own HTTP/1.1 chunk:

    <size>\\r\\ndata: {"id":...,"choices":[{"index":I,"text":"…","logprobs":null,"finish_reason":null,...}]}\\n\\n\\r\\n

`VllmFastPath` takes such chunks straight off the socket (`take_chunks`: HTTP framing, SSE
framing and the choice in one regex pass) or as SSE payloads (`feed_events`), and hands their
text, still JSON-escaped, to the assembler's `take_running`. Everything else goes the layered
way: `ResponseReader` -> `SSEParser` -> `StreamAssembler.feed_all`. This module is the only
place on the engine's side that spells vLLM's byte layout.

The equivalence contract: for any bytes, split into reads in any way, what the fast path takes
leaves the assembler exactly as the layered path would leave it (chunk counts, usage, and the
choices it finishes: index, text, tokens, finish_reason; timestamps aside), and what it does
not take it hands to the layered path untouched. (Where a stream is refused, which of the
choices that finished in the read that broke are delivered depends on the reads, in the
layered path alone too.) The one difference: the text of a running
chunk is judged as part of its whole choice's text, when the choice finishes, not on arrival:
a broken escape is refused then (ProtocolError: the choice is asked for again), and an escape
that the next chunk completes (a surrogate pair split in two) passes. The tests that hold it
to this: tests/unit/wire/test_vllm_fast_equivalence.py (the client's read path against the
layered one, at hypothesis-chosen read ends and faults) and tests/unit/test_openai_stream.py (real
vLLM captures, chunk by chunk).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from itertools import repeat

from engine.wire.openai import FinishedChoice, StreamAssembler

_CHOICE = b'"choices":[{"index":'  # ends the prefix every chunk of a response shares
_TEXT = b',"text":"'
_TEXT_END = b'","logprobs":'  # cannot occur inside a JSON string: its quotes would be escaped
_RUNNING_TAIL = (
    b'","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]'
)
_RUNNING_END = _RUNNING_TAIL + b"}"  # nothing follows the choices in a running chunk
_EVENT_HEAD = b"data: "
_CHUNK_END = b"}\n\n\r\n"  # a running chunk's last bytes: its JSON, its event and its HTTP chunk end
MAX_INDEX_DIGITS = 6  # n is at most a few thousand
MAX_CARRY = 1 << 20  # a partial chunk held back for the next read; a larger one goes the layered way


class VllmFastPath:
    """Wraps one response's `StreamAssembler`. Learns the response's prefix (id, created, model:
    the bytes before the index, the same in every chunk) from its first choice chunk."""

    __slots__ = ("assembler", "_prefix", "_chunk_re", "_chunk_fixed", "_carry")

    def __init__(self, assembler: StreamAssembler):
        self.assembler = assembler
        self._prefix: bytes | None = None
        self._chunk_re: re.Pattern[bytes] | None = None
        self._chunk_fixed = 0  # bytes of one running HTTP chunk other than its size, index and text
        self._carry = b""  # a partial chunk after the whole ones take_chunks took

    def feed_events(self, payloads: Iterable[bytes]) -> Iterator[FinishedChoice]:
        """`StreamAssembler.feed_all`, with runs of running chunks in vLLM's layout taken at once."""
        if self.assembler.chat:
            yield from self.assembler.feed_all(payloads)
            return
        run: list[bytes] = []  # running chunks, in order, not yet handed over
        digits: list[bytes] = []
        texts: list[bytes] = []
        for payload in payloads:
            running = self._running(payload)
            if running is not None:
                run.append(payload)
                digits.append(running[0])
                texts.append(running[1])
                continue
            if run:
                yield from self._hand_over(run, digits, texts)
                run, digits, texts = [], [], []
            yield from self.assembler.feed_all((payload,))
        if run:
            yield from self._hand_over(run, digits, texts)

    def take_chunks(self, data: bytes) -> bytes:
        """`data`: the next bytes of a chunked 200 response whose layered readers hold nothing
        (`ResponseReader.between_chunks`, `SSEParser.idle`). Takes them when they are whole
        running chunks (a partial chunk at the end waits for the next read); returns the bytes
        the layered path must read instead (b"" when all were taken)."""
        block = self._carry + data if self._carry else data
        end = block.rfind(_CHUNK_END)
        if end >= 0:
            cut = end + len(_CHUNK_END)
            if len(block) - cut < MAX_CARRY and self._take_whole_chunks(
                block[:cut] if cut < len(block) else block
            ):
                self._carry = block[cut:]
                return b""
        self._carry = b""
        return block

    def _running(self, payload: bytes) -> tuple[bytes, bytes] | None:
        """(index digits, raw text) of a running chunk in this response's layout, else None."""
        prefix = self._prefix
        if prefix is None:
            self._learn_prefix(payload)
            return None
        if not payload.startswith(prefix):
            return None
        skip = len(prefix)
        text = payload.find(_TEXT, skip, skip + MAX_INDEX_DIGITS + len(_TEXT))
        if text <= skip:
            return None
        start = text + len(_TEXT)
        end = payload.find(_TEXT_END, start)
        if end < 0 or len(payload) != end + len(_RUNNING_TAIL) + 1 or not payload.endswith(_RUNNING_END):
            return None
        return payload[skip:text], payload[start:end]

    def _learn_prefix(self, payload: bytes) -> None:
        at = payload.find(_CHOICE)
        if at > 0 and payload.startswith(b'{"id":'):
            self._prefix = payload[: at + len(_CHOICE)]

    def _hand_over(
        self, run: list[bytes], digits: list[bytes], texts: list[bytes]
    ) -> Iterator[FinishedChoice]:
        """Running chunks to the assembler at once; when one names no unfinished choice, the
        whole run goes the layered way, which says in order what is wrong."""
        if not self.assembler.take_running(digits, texts):
            yield from self.assembler.feed_all(run)

    def _take_whole_chunks(self, block: bytes) -> bool:
        """All of `block` when it is whole running chunks, each one SSE event; else nothing."""
        pattern = self._chunk_pattern()
        if pattern is None:
            return False
        found = pattern.findall(block)
        if not found:
            return False
        sizes, digits, texts = zip(*found)
        fixed = self._chunk_fixed
        event_lengths = [fixed + a + b for a, b in zip(map(len, digits), map(len, texts))]
        # The matches tile the block exactly and each chunk's size is its event's length.
        if (
            sum(event_lengths) + sum(map(len, sizes)) + 4 * len(found) != len(block)
            or list(map(int, sizes, repeat(16))) != event_lengths
        ):
            return False
        return self.assembler.take_running(digits, texts)

    def _chunk_pattern(self) -> re.Pattern[bytes] | None:
        if self._chunk_re is None and self._prefix is not None:
            event_head = _EVENT_HEAD + self._prefix
            self._chunk_re = re.compile(
                rb"([0-9a-fA-F]{1,6})\r\n"
                + re.escape(event_head)
                + rb"(\d{1,%d})" % MAX_INDEX_DIGITS
                + re.escape(_TEXT)
                + rb'([^"\\\n]*(?:\\.[^"\\\n]*)*)'
                + re.escape(_RUNNING_TAIL + _CHUNK_END)
            )
            self._chunk_fixed = len(event_head) + len(_TEXT) + len(_RUNNING_END) + len(b"\n\n")
        return self._chunk_re
