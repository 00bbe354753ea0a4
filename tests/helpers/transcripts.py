"""Read the raw vLLM transcripts kept in tests/fixtures/vllm-transcripts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

DIR = Path(__file__).parents[1] / "fixtures" / "vllm-transcripts"


@dataclass(frozen=True)
class Transcript:
    name: str
    status: int
    headers: dict[str, str]
    body: bytes  # de-chunked by curl, except for the --raw capture
    request: bytes | None  # the raw body sent (one of them is deliberately not JSON)

    def request_json(self) -> dict:
        if self.request is None:
            raise ValueError(f"transcript {self.name} has no request body")
        return orjson.loads(self.request)


def load(name: str) -> Transcript:
    """`name` is the file stem, e.g. '24_stream_n4_include_usage_only'."""
    raw = (DIR / f"{name}.txt").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    request_path = DIR / f"{name}.request.json"
    request = request_path.read_bytes() if request_path.exists() else None
    return Transcript(name, int(status_line.split()[1]), headers, body, request)


def streams() -> list[str]:
    """Names of every streaming transcript with an SSE body (the raw-chunked one excluded)."""
    names = []
    for path in sorted(DIR.glob("*.txt")):
        if path.stem.startswith("29_") or path.stem == "ANALYSIS":
            continue
        t = load(path.stem)
        if t.headers.get("content-type", "").startswith("text/event-stream"):
            names.append(path.stem)
    return names


def dechunk(body: bytes) -> bytes:
    """Undo HTTP/1.1 chunked transfer coding (for the --raw capture)."""
    out: list[bytes] = []
    pos = 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2
