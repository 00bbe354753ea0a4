"""Parsing and validating `/v1/completions` and `/v1/chat/completions` bodies the way vLLM 0.32
does. Pure: bytes in, a `CompletionRequest` (or `ChatRequest`) or an `APIError` out.

Messages, types, params and statuses follow the real server (see shared/real-vllm/NOTES.md):
FastAPI/pydantic errors for bodies that are not valid JSON or have wrongly typed fields, then
vLLM's own checks. Checks that vLLM only makes once the stream has started (sample logprobs
above 20, token ids outside the vocabulary) are marked `in_band`: a streaming client gets them
inside a 200 event stream, everyone else as a plain 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import orjson

from engine.simulator.chat import Message

DEFAULT_MAX_TOKENS = 16
MAX_LOGPROBS = 20
VOCAB_SIZE = 32_000  # token ids at or above are out of vocabulary (as in Llama 2)


class APIError(Exception):
    """An error response: status, and the body's message, type and param."""

    def __init__(self, status: int, message: str, type: str = "BadRequestError", param: str | None = None,
                 in_band: bool = False):  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.in_band = in_band


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    prompts: tuple[str | tuple[int, ...], ...]  # text, or token ids
    n: int = 1
    max_tokens: int | None = None  # None: vLLM's default, capped by the context left
    stop: tuple[str, ...] = ()
    seed: int | None = None
    temperature: float = 1.0
    stream: bool = False
    include_usage: bool = False
    continuous_usage: bool = False
    include_stop_str_in_output: bool = False


def parse_completion_request(body: bytes, served_model: str, max_model_len: int) -> CompletionRequest:
    data = _decode(body)
    stream = _typed(data, "stream", bool) or False
    options = _typed(data, "stream_options", dict)
    if options is not None and not stream:
        raise APIError(400, "Stream options can only be defined when `stream=True`. (parameter=stream_options)",
                       param="stream_options")  # fmt: skip
    prompts = _prompts(data.get("prompt"))
    model = _typed(data, "model", str)
    if model is not None and model != served_model:
        raise APIError(404, f"The model `{model}` does not exist. Valid aliases: {served_model}.", "NotFoundError",
                       "model")  # fmt: skip
    n = _typed(data, "n", int)
    n = 1 if n is None else n
    if n < 1:
        raise APIError(400, f"n must be at least 1, got {n}.")
    temperature = _typed(data, "temperature", float)
    temperature = 1.0 if temperature is None else float(temperature)
    if temperature < 0:
        raise _param_error("temperature", f"temperature must be non-negative, got {temperature}.", temperature)
    top_p = _typed(data, "top_p", float)
    if top_p is not None and not 0 < top_p <= 1:
        raise _param_error("top_p", f"top_p must be in (0, 1], got {float(top_p)}.", float(top_p))
    max_tokens = _typed(data, "max_tokens", int)
    if max_tokens is not None and max_tokens < 1:
        raise _param_error("max_tokens", f"max_tokens must be at least 1, got {max_tokens}.", max_tokens)
    if max_tokens is not None and max_tokens > max_model_len:
        message = f"max_tokens={max_tokens} cannot be greater than max_model_len={max_model_len}."
        raise _param_error("max_tokens", message + " Please request fewer output tokens.", max_tokens)
    logprobs = _typed(data, "logprobs", int)
    if logprobs is not None and logprobs > MAX_LOGPROBS:
        raise _param_error("logprobs", f"Requested sample logprobs of {logprobs}, which is greater than max "
                           f"allowed: {MAX_LOGPROBS}", logprobs, in_band=stream)  # fmt: skip
    for prompt in prompts:
        for token in prompt if isinstance(prompt, tuple) else ():
            if not 0 <= token < VOCAB_SIZE:
                raise APIError(400, f"Token id {token} is out of vocabulary", in_band=stream)
    seed = _typed(data, "seed", int)
    options = options or {}
    return CompletionRequest(
        prompts=prompts,
        n=n,
        max_tokens=max_tokens,
        stop=_stops(data.get("stop")),
        seed=seed,
        temperature=temperature,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        continuous_usage=bool(options.get("include_usage") and options.get("continuous_usage_stats")),
        include_stop_str_in_output=bool(_typed(data, "include_stop_str_in_output", bool)),
    )


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[Message, ...]
    n: int = 1
    max_tokens: int | None = None  # max_completion_tokens, else max_tokens; None: what the context leaves
    stop: tuple[str, ...] = ()
    seed: int | None = None
    temperature: float = 1.0
    stream: bool = False
    include_usage: bool = False
    continuous_usage: bool = False
    include_stop_str_in_output: bool = False


def parse_chat_request(body: bytes, served_model: str, max_model_len: int) -> ChatRequest:
    data = _decode(body)
    messages = _messages(data)
    stream = _typed(data, "stream", bool) or False
    options = _typed(data, "stream_options", dict)
    if options and not stream:  # vLLM's chat validator tests truthiness: `{}` passes
        raise APIError(400, "Stream options can only be defined when `stream=True`. (parameter=stream_options)",
                       param="stream_options")  # fmt: skip
    model = _typed(data, "model", str)
    if model is not None and model != served_model:
        raise APIError(404, f"The model `{model}` does not exist. Valid aliases: {served_model}.", "NotFoundError",
                       "model")  # fmt: skip
    limit = _typed(data, "max_completion_tokens", int)
    param = "max_completion_tokens"
    if limit is None:
        limit, param = _typed(data, "max_tokens", int), "max_tokens"
    if limit is not None and limit > max_model_len:
        message = f"{param}={limit} cannot be greater than max_model_len={max_model_len}."
        raise _param_error(param, message + " Please request fewer output tokens.", limit)
    n = _typed(data, "n", int)
    n = 1 if n is None else n
    if n < 1:
        raise APIError(400, f"n must be at least 1, got {n}.")
    temperature = _typed(data, "temperature", float)
    temperature = 1.0 if temperature is None else float(temperature)
    if temperature < 0:
        raise _param_error("temperature", f"temperature must be non-negative, got {temperature}.", temperature)
    top_p = _typed(data, "top_p", float)
    if top_p is not None and not 0 < top_p <= 1:
        raise _param_error("top_p", f"top_p must be in (0, 1], got {float(top_p)}.", float(top_p))
    if limit is not None and limit < 1:
        raise _param_error("max_tokens", f"max_tokens must be at least 1, got {limit}.", limit)
    options = options or {}
    return ChatRequest(
        messages=messages,
        n=n,
        max_tokens=limit,
        stop=_stops(data.get("stop")),
        seed=_typed(data, "seed", int),
        temperature=temperature,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        continuous_usage=bool(options.get("include_usage") and options.get("continuous_usage_stats")),
        include_stop_str_in_output=bool(_typed(data, "include_stop_str_in_output", bool)),
    )


def _messages(data: dict) -> tuple[Message, ...]:
    """`messages`: a list of {"role", "content"} objects, content a string or text parts."""
    if "messages" not in data:
        raise _validation_error(f"{{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required', "
                                f"'input': {data!r}}}", None)  # fmt: skip
    value = data["messages"]
    if not isinstance(value, list):
        raise _validation_error(f"{{'type': 'list_type', 'loc': ('body', 'messages'), 'msg': 'Input should be a "
                                f"valid list', 'input': {value!r}}}", None)  # fmt: skip
    out = []
    for i, message in enumerate(value):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                             and isinstance(p.get("text"), str) for p in content):  # fmt: skip
            content = "\n".join(p["text"] for p in content)
        if not isinstance(role, str) or not (content is None or isinstance(content, str)):
            raise _validation_error(f"{{'type': 'model_type', 'loc': ('body', 'messages', {i}), 'msg': 'Input should "
                                    f"be a valid message', 'input': {message!r}}}", None)  # fmt: skip
        out.append(Message(role, content or ""))
    return tuple(out)


def check_prompt_length(prompt_tokens: int, max_model_len: int) -> None:
    """A prompt that leaves no room for output is an error (vLLM stops counting at one more
    token than fits, hence "at least")."""
    if prompt_tokens >= max_model_len:
        seen = min(prompt_tokens, max_model_len + 1)
        message = (
            f"This model's maximum context length is {max_model_len} tokens. However, your prompt contains at "
            f"least {seen} input tokens, which exceeds this limit even without any output tokens. Please reduce "
            "the length of the input prompt."
        )
        raise _param_error("input_tokens", message, seen)


def _decode(body: bytes) -> dict:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson's messages differ from the stdlib's, which pydantic reports: ask the stdlib.
        try:
            json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            pos, msg = getattr(exc, "pos", 0), getattr(exc, "msg", "Invalid UTF-8")
            raise _validation_error(
                f"{{'type': 'json_invalid', 'loc': 'body.{pos}', 'msg': 'JSON decode error', "
                f"'input': '<dict of 0 items>', 'ctx': {{'error': '{msg}'}}}}", f"body.{pos}"
            ) from None
        raise _validation_error("{'type': 'json_invalid', 'loc': 'body', 'msg': 'JSON decode error'}", "body") from None
    if not isinstance(data, dict):
        raise _validation_error(
            f"{{'type': 'model_attributes_type', 'loc': ('body',), 'msg': 'Input should be a valid dictionary or "
            f"object to extract fields from', 'input': {data!r}}}", None
        )
    return data


# pydantic's error type and wording per expected type
_TYPE_ERRORS = {bool: ("bool_type", "a valid boolean"), int: ("int_type", "a valid integer"),
                float: ("float_type", "a valid number"), str: ("string_type", "a valid string"),
                dict: ("dict_type", "a valid dictionary")}  # fmt: skip


def _typed(data: dict, field: str, kind: type):
    """data[field] if it is null or of `kind` (ints pass as floats, integral floats as ints)."""
    value = data.get(field)
    if value is None:
        return None
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        error, wanted = _TYPE_ERRORS[kind]
        raise _validation_error(
            f"{{'type': '{error}', 'loc': ('body', '{field}'), 'msg': 'Input should be {wanted}', "
            f"'input': {value!r}}}", None
        )
    return value


def _prompts(value) -> tuple[str | tuple[int, ...], ...]:
    """A string, a list of strings, a list of token ids, or a list of lists of token ids."""
    if isinstance(value, str):
        prompts: list = [value]
    elif isinstance(value, list) and value and all(_is_token(t) for t in value):
        prompts = [tuple(value)]
    elif isinstance(value, list) and value and all(isinstance(p, str) for p in value):
        prompts = list(value)
    elif isinstance(value, list) and value and all(isinstance(p, list) and all(map(_is_token, p)) for p in value):
        prompts = [tuple(p) for p in value]
    elif value is None or value == [] or value == "":
        prompts = []
    else:
        raise _validation_error(
            f"{{'type': 'string_type', 'loc': ('body', 'prompt'), 'msg': 'Input should be a valid string', "
            f"'input': {value!r}}}", None
        )
    if not prompts or any(len(p) == 0 for p in prompts):
        raise APIError(400, "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)",
                       param="prompt")  # fmt: skip
    return tuple(prompts)


def _is_token(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _stops(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise _validation_error(
        f"{{'type': 'list_type', 'loc': ('body', 'stop'), 'msg': 'Input should be a valid list', "
        f"'input': {value!r}}}", None
    )


def _param_error(param: str, message: str, value, in_band: bool = False) -> APIError:
    return APIError(400, f"{message} (parameter={param}, value={value})", param=param, in_band=in_band)


def _validation_error(detail: str, param: str | None) -> APIError:
    # FastAPI's request validation: note the type "Bad Request", not "BadRequestError".
    return APIError(400, f"1 validation error:\n  {detail}", "Bad Request", param)
