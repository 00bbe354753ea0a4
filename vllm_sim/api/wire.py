"""The bytes vLLM 0.32 puts on the wire for completions and chat completions. Pure functions
and pre-encoded parts.

A stream chunk is concatenated from parts fixed per request (id, created, model), per choice
(its index) and per state (running, or finished with a reason), around the text, which the
emission plan already holds as a JSON string. Key order, compactness and which chunk carries
`usage` and `system_fingerprint` follow the real transcripts:

    data: {"id":"cmpl-…","object":"text_completion","created":…,"model":"…","choices":[{"index":0,
    "text":"…","logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,
    "token_ids":null}][,"usage":{…}][,"system_fingerprint":"…"]}

Chat chunks (`ChatChunkEncoder`) differ: `chatcmpl-` ids, object "chat.completion.chunk", the
text in `delta.content`, `stop_reason` only in a choice's finishing chunk, a role chunk per
choice before any content (the only chunks with the top-level `prompt_token_ids` and
`prompt_text`), and `completion_tokens_details` in the per-chunk usage:

    data: {"id":"chatcmpl-…","object":"chat.completion.chunk","created":…,"model":"…","choices":[{
    "index":0,"delta":{"content":"…"},"logprobs":null,"finish_reason":null,"token_ids":null}]
    [,"usage":{…,"completion_tokens_details":null}]}

Both encoders offer the same methods, so the batch engine streams either without knowing which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import orjson

DONE_EVENT = b"data: [DONE]\n\n"
_RUNNING_TAIL = (
    b',"logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]'
)
_CHAT_RUNNING_TAIL = b'},"logprobs":null,"finish_reason":null,"token_ids":null}]'
_EVENT_END = b"}\n\n"


@dataclass(frozen=True, slots=True)
class Choice:
    """A finished choice, for the non-streaming body."""

    index: int
    text: str
    finish_reason: str
    stop_reason: str | None


class _Encoder:
    """Pre-encoded parts of one request's stream: the chunk head and the per-choice prefixes."""

    __slots__ = ("_head", "_fingerprint", "_prefixes")
    OBJECT: bytes
    CHOICE_OPEN: bytes  # a choice's fields up to its text, after "index"

    def __init__(self, request_id: str, created: int, model: str, fingerprint: str):
        self._head = (
            b'data: {"id":'
            + orjson.dumps(request_id)
            + b',"object":"'
            + self.OBJECT
            + b'","created":%d,"model":' % created
            + orjson.dumps(model)
            + b',"choices":'
        )
        self._fingerprint = b',"system_fingerprint":' + orjson.dumps(fingerprint)
        self._prefixes: dict[int, bytes] = {}

    def prefix(self, index: int) -> bytes:
        """Everything up to the choice's text, for choice `index`."""
        prefix = self._prefixes.get(index)
        if prefix is None:
            prefix = self._prefixes[index] = self._head + b'[{"index":%d,' % index + self.CHOICE_OPEN
        return prefix

    def usage_event(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """The request-wide usage chunk (`include_usage`): no choices, and the fingerprint (chat: the
        same, no `completion_tokens_details`)."""
        return (
            self._head
            + b"[]"
            + usage_field(prompt_tokens, completion_tokens)
            + self._fingerprint
            + _EVENT_END
        )


class ChunkEncoder(_Encoder):
    """/v1/completions chunks."""

    __slots__ = ()
    OBJECT = b"text_completion"
    CHOICE_OPEN = b'"text":'

    def finish_event(
        self,
        prefix: bytes,
        text: bytes,
        finish_reason: str,
        stop_reason: str | None,
        usage: bytes,
        fingerprint: bool,
    ) -> bytes:
        """A choice's last chunk; `text` is a JSON string, `usage` a `usage_field` or b""."""
        return (
            prefix
            + text
            + b',"logprobs":null,"finish_reason":'
            + orjson.dumps(finish_reason)
            + b',"stop_reason":'
            + orjson.dumps(stop_reason)
            + b',"prompt_token_ids":null,"token_ids":null}]'
            + usage
            + (self._fingerprint if fingerprint else b"")
            + _EVENT_END
        )

    @staticmethod
    def token_event(prefix: bytes, text: bytes, usage: bytes = b"") -> bytes:
        """A running choice's chunk: `prefix` from `prefix()`, `text` a JSON string."""
        return prefix + text + _RUNNING_TAIL + usage + _EVENT_END

    @staticmethod
    def step_usage(prompt_tokens: int, completion_tokens: int) -> bytes:
        """A choice's own running usage (`continuous_usage_stats`)."""
        return usage_field(prompt_tokens, completion_tokens)


class ChatChunkEncoder(_Encoder):
    """/v1/chat/completions chunks: the same methods as `ChunkEncoder`, and a role chunk."""

    __slots__ = ()
    OBJECT = b"chat.completion.chunk"
    CHOICE_OPEN = b'"delta":{"content":'

    def role_event(self, index: int, usage: bytes = b"") -> bytes:
        """A choice's first chunk: the assistant role and empty content, before any token."""
        return (
            self._head + b'[{"index":%d,"delta":{"role":"assistant","content":""},"logprobs":null,'
            b'"finish_reason":null}]'
            % index
            + usage
            + b',"prompt_token_ids":null,"prompt_text":null'
            + _EVENT_END
        )

    def finish_event(
        self,
        prefix: bytes,
        text: bytes,
        finish_reason: str,
        stop_reason: str | None,
        usage: bytes,
        fingerprint: bool,
    ) -> bytes:
        """A choice's last chunk, the only one with `stop_reason`."""
        return (
            prefix
            + text
            + b'},"logprobs":null,"finish_reason":'
            + orjson.dumps(finish_reason)
            + b',"stop_reason":'
            + orjson.dumps(stop_reason)
            + b',"token_ids":null}]'
            + usage
            + (self._fingerprint if fingerprint else b"")
            + _EVENT_END
        )

    @staticmethod
    def token_event(prefix: bytes, text: bytes, usage: bytes = b"") -> bytes:
        return prefix + text + _CHAT_RUNNING_TAIL + usage + _EVENT_END

    @staticmethod
    def step_usage(prompt_tokens: int, completion_tokens: int) -> bytes:
        """A choice's own running usage, which in chat carries `completion_tokens_details`."""
        return (
            b',"usage":{"prompt_tokens":%d,"total_tokens":%d,"completion_tokens":%d,'
            b'"completion_tokens_details":null}'
            % (prompt_tokens, prompt_tokens + completion_tokens, completion_tokens)
        )


def usage_field(prompt_tokens: int, completion_tokens: int) -> bytes:
    return b',"usage":{"prompt_tokens":%d,"total_tokens":%d,"completion_tokens":%d}' % (
        prompt_tokens,
        prompt_tokens + completion_tokens,
        completion_tokens,
    )


def http_chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk: vLLM (uvicorn) sends each SSE event as its own chunk."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def completion_body(
    request_id: str,
    created: int,
    model: str,
    fingerprint: str,
    choices: list[Choice],
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    """The non-streaming response, all keys in vLLM's order."""
    return orjson.dumps(
        {
            "id": request_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": c.index,
                    "text": c.text,
                    "logprobs": None,
                    "finish_reason": c.finish_reason,
                    "stop_reason": c.stop_reason,
                    "token_ids": None,
                    "prompt_logprobs": None,
                    "prompt_token_ids": None,
                    "routed_experts": None,
                }
                for c in choices
            ],
            "service_tier": None,
            "system_fingerprint": fingerprint,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "completion_tokens": completion_tokens,
                "prompt_tokens_details": None,
                "completion_tokens_details": None,
            },
            "kv_transfer_params": None,
            "ec_transfer_params": None,
            "metrics": None,
        }
    )


def chat_completion_body(
    request_id: str,
    created: int,
    model: str,
    fingerprint: str,
    choices: list[Choice],
    prompt_tokens: int,
    completion_tokens: int,
) -> bytes:
    """The non-streaming chat response, all keys in vLLM's order."""
    return orjson.dumps(
        {
            "id": request_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": c.index,
                    "message": {
                        "role": "assistant",
                        "content": c.text,
                        "refusal": None,
                        "annotations": None,
                        "audio": None,
                        "function_call": None,
                        "reasoning": None,
                    },
                    "logprobs": None,
                    "finish_reason": c.finish_reason,
                    "stop_reason": c.stop_reason,
                    "token_ids": None,
                    "routed_experts": None,
                }
                for c in choices
            ],
            "service_tier": None,
            "system_fingerprint": fingerprint,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "completion_tokens": completion_tokens,
                "prompt_tokens_details": None,
                "completion_tokens_details": None,
            },
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "prompt_text": None,
            "kv_transfer_params": None,
            "ec_transfer_params": None,
            "metrics": None,
        }
    )


def error_body(message: str, type: str, param: str | None, code: int) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def in_band_error_event(message: str, type: str, param: str | None, code: int) -> bytes:
    """An error found after the stream started: note vLLM's non-compact JSON here."""
    body = json.dumps(
        {"error": {"message": message, "type": type, "param": param, "code": code}}, ensure_ascii=False
    )
    return b"data: " + body.encode() + b"\n\n"


def models_body(model: str, created: int, root: str, max_model_len: int, permission_id: str) -> bytes:
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {
                    "id": model,
                    "object": "model",
                    "created": created,
                    "owned_by": "vllm",
                    "root": root,
                    "parent": None,
                    "max_model_len": max_model_len,
                    "permission": [
                        {
                            "id": permission_id,
                            "object": "model_permission",
                            "created": created,
                            "allow_create_engine": False,
                            "allow_sampling": True,
                            "allow_logprobs": True,
                            "allow_search_indices": False,
                            "allow_view": True,
                            "allow_fine_tuning": False,
                            "organization": "*",
                            "group": None,
                            "is_blocking": False,
                        }
                    ],
                }
            ],
        }
    )
