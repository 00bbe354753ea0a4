"""A sans-IO reader of one HTTP/1.1 response: bytes in, the status, headers and body bytes out.

The streaming client reads vLLM's responses with it straight off an asyncio transport. vLLM
(uvicorn) sends every SSE event as its own HTTP chunk, a few hundred bytes each, and a general
HTTP client pays Python-level bookkeeping per chunk; here a whole socket read is de-chunked in
one loop and handed on as one piece. Bodies framed by chunked coding, Content-Length or the end
of the connection are all read; anything malformed raises `ProtocolError` and nothing else.
"""

from __future__ import annotations

from itertools import repeat

from engine.errors import ProtocolError

MAX_HEAD_BYTES = 64 * 1024  # status line and headers
MAX_CHUNK_LINE = 1024  # a chunk-size line, extensions included
MAX_CHUNK_BYTES = 16 << 20  # vLLM sends one SSE event per chunk, a few hundred bytes
MAX_INTERIM = 16  # 1xx responses (100 Continue, 103) before the real one

# Body framing
_CHUNKED, _LENGTH, _UNTIL_CLOSE = 1, 2, 3
# States of the chunked decoder
_SIZE, _DATA, _DATA_END, _TRAILER = 0, 1, 2, 3


class ResponseReader:
    """Feed the bytes of one response as they arrive; `feed` returns the body bytes they
    completed. `status` and `headers` (names lower-cased) are set once the head is in; `done`
    once the body has ended."""

    __slots__ = ("status", "headers", "done", "_buffer", "_framing", "_state", "_remaining", "_interim")

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.done = False
        self._buffer = b""
        self._framing = 0
        self._state = _SIZE
        self._remaining = 0  # chunk or Content-Length bytes still to come
        self._interim = 0  # 1xx responses seen

    @property
    def between_chunks(self) -> bool:
        """A chunked body is under way and everything fed so far ended exactly at a chunk's end."""
        return self._framing == _CHUNKED and self._state == _SIZE and not self._buffer and not self.done

    def feed(self, data: bytes) -> bytes:
        if self.done:
            if data:
                raise ProtocolError("data after the end of the response")
            return b""
        buffer = self._buffer + data if self._buffer else data
        self._buffer = b""
        if self.status is None:
            buffer = self._head(buffer)
            if self.status is None or not buffer:
                return b""
        if self._framing == _CHUNKED:
            return self._chunked(buffer)
        if self._framing == _LENGTH:
            body = buffer[: self._remaining]
            self._remaining -= len(body)
            if len(buffer) > len(body):
                raise ProtocolError("data after the end of the response")
            self.done = self._remaining == 0
            return body
        return buffer  # until the connection closes

    def close(self) -> None:
        """The connection ended: fine after a complete response or a close-delimited body."""
        if self.status is not None and self._framing == _UNTIL_CLOSE:
            self.done = True
        if not self.done:
            raise ProtocolError("the connection closed before the response ended")

    def _head(self, buffer: bytes) -> bytes:
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise ProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
                self._buffer = buffer
                return b""
            status = self._parse_head(buffer[:end])
            buffer = buffer[end + 4 :]
            if not 100 <= status < 200:  # 1xx (100 Continue, 103) precede the real response
                self.status = status
                return buffer
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise ProtocolError(f"more than {MAX_INTERIM} interim (1xx) responses")

    def _parse_head(self, head: bytes) -> int:
        try:
            status_line, *lines = head.decode("latin-1").split("\r\n")
            version, code, *_ = status_line.split(" ", 2)
            status = int(code)
        except ValueError:
            raise ProtocolError(f"not an HTTP response: {head[:60]!r}") from None
        if not version.startswith("HTTP/1.") or len(code) != 3 or not 100 <= status <= 599:
            raise ProtocolError(f"not an HTTP/1.x response: {head[:60]!r}")
        headers = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ProtocolError(f"malformed header line {line[:60]!r}")
            headers[name.lower()] = value.strip()
        self.headers = headers
        if headers.get("transfer-encoding", "").lower().rsplit(",", 1)[-1].strip() == "chunked":
            self._framing = _CHUNKED
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit() or len(length) > 15:
                raise ProtocolError(f"bad Content-Length {length[:20]!r}")
            self._framing, self._remaining = _LENGTH, int(length)
            self.done = self._remaining == 0 and not 100 <= status < 200
        else:
            self._framing = _UNTIL_CLOSE
        return status

    def _chunked(self, buffer: bytes) -> bytes:
        if self._state == _SIZE and buffer.endswith(b"\r\n"):
            # Whole chunks only (the usual read): split at CRLF in C and check that every CR
            # was framing and every size matches its data; otherwise decode step by step.
            parts = buffer.split(b"\r\n")
            if len(parts) & 1 and buffer.count(b"\r") == len(parts) - 1:
                sizes, datas = parts[0:-1:2], parts[1:-1:2]
                lengths = list(map(len, datas))
                if 0 not in lengths and b"".join(sizes).isalnum():
                    try:
                        fits = lengths == list(map(int, sizes, repeat(16)))
                    except ValueError:
                        fits = False
                    if fits:
                        return b"".join(datas)
        out: list[bytes] = []
        pos, end = 0, len(buffer)
        state, remaining = self._state, self._remaining
        while pos < end:
            if state == _SIZE:
                line_end = buffer.find(b"\r\n", pos, pos + MAX_CHUNK_LINE)
                if line_end < 0:
                    if end - pos >= MAX_CHUNK_LINE:
                        raise ProtocolError("chunk-size line too long")
                    break
                size = buffer[pos:line_end]
                if b";" in size:  # chunk extensions: ignored
                    size = size.split(b";", 1)[0].rstrip(b" \t")
                try:  # isalnum: no sign, space or underscore, which int() would accept
                    remaining = int(size, 16) if size.isalnum() and len(size) <= 15 else -1
                except ValueError:
                    remaining = -1
                if not 0 <= remaining <= MAX_CHUNK_BYTES:
                    raise ProtocolError(
                        f"bad chunk size {buffer[pos:line_end][:20]!r} (at most {MAX_CHUNK_BYTES})"
                    )
                pos = line_end + 2
                if remaining == 0:
                    state = _TRAILER
                    continue
                data_end = pos + remaining
                if data_end + 2 <= end:  # the common case: the whole chunk is here
                    if buffer[data_end : data_end + 2] != b"\r\n":
                        raise ProtocolError("chunk data not followed by CRLF")
                    out.append(buffer[pos:data_end])
                    pos, remaining = data_end + 2, 0
                    continue
                state = _DATA
            elif state == _DATA:
                take = min(remaining, end - pos)
                out.append(buffer[pos : pos + take])
                pos += take
                remaining -= take
                if remaining == 0:
                    state = _DATA_END
            elif state == _DATA_END:
                if end - pos < 2:
                    break
                if buffer[pos : pos + 2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF")
                pos += 2
                state = _SIZE
            else:  # _TRAILER: header lines until an empty one
                line_end = buffer.find(b"\r\n", pos, pos + MAX_HEAD_BYTES)
                if line_end < 0:
                    if end - pos >= MAX_HEAD_BYTES:
                        raise ProtocolError("trailer too long")
                    break
                if line_end == pos:
                    self.done = True
                    if line_end + 2 < end:
                        raise ProtocolError("data after the end of the response")
                    pos = end
                    break
                pos = line_end + 2
        self._state, self._remaining = state, remaining
        self._buffer = buffer[pos:] if pos < end else b""
        return b"".join(out) if len(out) != 1 else out[0]
