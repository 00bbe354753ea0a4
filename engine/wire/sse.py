"""A sans-IO parser for Server-Sent Events: bytes in, `data` payloads out, no I/O at all.

vLLM frames every event as ``data: <json>\\n\\n`` with LF line ends; a read made of whole
such events is split in one C call, and otherwise that case costs one `find` and one slice
per event. Anything else the SSE specification allows (CR or
CRLF line ends, multi-line data, `event:`/`id:` fields, comments) goes through the general path,
so a proxy that rewrites line ends cannot break us.
"""

from __future__ import annotations

from engine.errors import ProtocolError

MAX_EVENT_BYTES = 1 << 20  # an incomplete event larger than this is a broken stream, not data


class SSEParser:
    """Feed bytes as they arrive; get back the complete events' data payloads, in order."""

    __slots__ = ("_buffer", "_max_event_bytes", "_general")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES):
        self._buffer = b""
        self._max_event_bytes = max_event_bytes
        self._general = False  # set for good once a CR is seen

    @property
    def idle(self) -> bool:
        """No partial event is buffered (and line ends have been plain LF so far)."""
        return not self._buffer and not self._general

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data if self._buffer else data
        if not self._general and b"\r" in data:
            self._general = True
        if self._general:
            payloads, self._buffer = _parse_general(buffer)
        elif buffer.startswith(b"data: ") and buffer.endswith(b"\n\n"):
            # Whole `data: ...` events only (vLLM, read by read): one split in C, valid when
            # the only LFs are the events' ends.
            payloads = buffer[6:-2].split(b"\n\ndata: ")
            if buffer.count(b"\n") != 2 * len(payloads):
                payloads, self._buffer = _parse_lf(buffer)
            else:
                self._buffer = b""
        else:
            payloads, self._buffer = _parse_lf(buffer)
        if len(self._buffer) > self._max_event_bytes:
            raise ProtocolError(f"SSE event exceeds {self._max_event_bytes} bytes without ending")
        return payloads

    def close(self) -> list[bytes]:
        """Call at end of stream; returns events completed by a final lone CR. A partial event
        left over means the stream was cut."""
        payloads: list[bytes] = []
        if self._buffer.endswith(b"\r"):  # held back in case an LF followed; none will
            payloads, self._buffer = _parse_lf(self._buffer[:-1].replace(b"\r", b"\n") + b"\n")
        if self._buffer.strip(b"\r\n"):
            raise ProtocolError("stream ended inside an SSE event")
        self._buffer = b""
        return payloads


def _parse_lf(buffer: bytes) -> tuple[list[bytes], bytes]:
    payloads: list[bytes] = []
    start = 0
    while True:
        # vLLM's case, `data: <json>\n\n`, costs one scan: the event's first LF is its last line's.
        line_end = buffer.find(b"\n", start)
        if line_end < 0:
            return payloads, buffer[start:]
        if buffer[line_end + 1 : line_end + 2] == b"\n" and buffer.startswith(b"data: ", start):
            payloads.append(buffer[start + 6 : line_end])
            start = line_end + 2
            continue
        end = buffer.find(b"\n\n", start)
        if end < 0:
            return payloads, buffer[start:]
        payload = _event_data(buffer[start:end].split(b"\n"))
        if payload is not None:
            payloads.append(payload)
        start = end + 2


def _parse_general(buffer: bytes) -> tuple[list[bytes], bytes]:
    # Normalise line ends, keeping a trailing lone CR: its LF may come in the next feed.
    tail = b""
    if buffer.endswith(b"\r"):
        buffer, tail = buffer[:-1], b"\r"
    payloads, rest = _parse_lf(buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
    return payloads, rest + tail


def _event_data(lines: list[bytes]) -> bytes | None:
    """Apply the SSE field rules to one event's lines; None when it carries no data."""
    data: list[bytes] = []
    for line in lines:
        if not line or line.startswith(b":"):
            continue  # blank line or comment (keep-alive)
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name not in (b"event", b"id", b"retry"):
            raise ProtocolError(f"unknown SSE field {name[:40]!r}")
    return b"\n".join(data) if data else None
