"""The engine side's bytes of the fork-server protocol (server.py's docstring, PROTOCOL): a request
frame out, a reply line in; and how a dying jail's last words are quoted."""

from __future__ import annotations

from typing import Any

import orjson

from sandbox.limits import Limits

_LIMITS_JSON: dict[Limits, bytes] = {}


def request_frame(program: str, limits: Limits, extra: dict[str, Any] | None = None) -> bytes:
    """One request frame; a Limits' JSON is encoded once (a run uses a few hundred at most)."""
    encoded = _LIMITS_JSON.get(limits)
    if encoded is None:
        if len(_LIMITS_JSON) > 10_000:
            _LIMITS_JSON.clear()
        encoded = _LIMITS_JSON[limits] = orjson.dumps(limits.to_dict())
    payload = b'{"program":' + orjson.dumps(program) + b',"limits":' + encoded
    payload += b"," + orjson.dumps(extra)[1:] if extra else b"}"
    return len(payload).to_bytes(4, "big") + payload


def number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_reply(line: bytes) -> dict | None:
    if not line:
        return None
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def last_words(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def in_parentheses(text: str) -> str:
    return f" ({text})" if text else ""
