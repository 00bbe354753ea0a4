"""The harness's status channel, engine side: a sans-IO parser fed the bytes of the status fd.

One JSON object per line (written by the child in `sandbox/forkserver/server.py`):

    {"event": "ready"}                               stdin read; the program starts now
    {"event": "passed", "nonce": "<hex>"}            exec returned: check(entry_point) returned
    {"event": "failed", "type": T, "message": M}     the program raised (SystemExit included)
    {"event": "oom", "type": "MemoryError", ...}     the program ran out of memory
    {"event": "cpu_limit"}                           the program used up its CPU-time limit
    {"event": "setup_failed", "message": M}          the child could not set up (before "ready")

The program under test can write to this fd too, so nothing here is trusted except a pass record
carrying the nonce the engine chose for this sample. Memory stays bounded: an overlong line is
dropped, whatever else arrives.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import orjson

MAX_LINE_BYTES = 4096
MAX_FIELD_CHARS = 300


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed/oom record: the exception's type name and a one-line message."""

    oom: bool
    type: str
    message: str


class StatusParser:
    def __init__(self, nonce: str):
        self._nonce = nonce.encode("ascii")
        self._partial = bytearray()
        self._discarding = False  # inside an overlong line: drop bytes up to its newline
        self.ready = False
        self.passed = False  # a pass record with this sample's nonce arrived
        self.forged_pass = False  # a pass record with any other nonce arrived
        self.failure: Failure | None = None  # the last failed/oom record
        self.setup_failure: str | None = None  # the child could not set up its sandbox
        self.cpu_limit = False  # the CPU-time limit ended the program

    def feed(self, data: bytes) -> None:
        lines = data.split(b"\n")
        for i, piece in enumerate(lines):
            complete = i < len(lines) - 1
            if self._discarding:
                self._discarding = not complete
                continue
            self._partial += piece
            if len(self._partial) > MAX_LINE_BYTES:
                self._partial.clear()
                self._discarding = not complete
                continue
            if complete:
                self._line(bytes(self._partial))
                self._partial.clear()

    def _line(self, line: bytes) -> None:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return
        if not isinstance(record, dict):
            return
        event = record.get("event")
        if event == "ready":
            self.ready = True
        elif event == "passed":
            nonce = record.get("nonce")
            if isinstance(nonce, str) and hmac.compare_digest(nonce.encode("utf-8", "replace"), self._nonce):
                self.passed = True
            else:
                self.forged_pass = True
        elif event == "cpu_limit":
            self.cpu_limit = True
        elif event == "setup_failed" and not self.ready:
            self.setup_failure = "program sandbox set-up failed: " + _text(record.get("message"))
        elif event in ("failed", "oom"):
            self.failure = Failure(
                oom=event == "oom",
                type=_text(record.get("type")) or "Exception",
                message=_text(record.get("message")),
            )


def _text(value: object) -> str:
    """A record field as one short line (the program may have written the record)."""
    if not isinstance(value, str):
        return ""
    return " ".join(value.split())[:MAX_FIELD_CHARS]
