"""Parsing and validating `/v1/completions` and `/v1/chat/completions` bodies the way vLLM 0.32
does. Pure: bytes in, a `CompletionRequest` or `ChatRequest` or an `APIError` out.

Messages, types, params, statuses and their order follow the real server (shared/real-vllm/NOTES.md
and the captures in tests/fixtures/vllm-transcripts and vllm-chat-transcripts):

1. the request model's "before" validators, on the raw JSON (no prompt; stream_options without
   stream; chat messages that cannot be iterated: a vLLM bug answers "'NoneType' object is not
   iterable");
2. pydantic's field validation in lax mode: every field's errors, collected in field order, as
   FastAPI reports them ("N validation errors:", at most 10 shown, `param` the first `loc`);
3. vLLM's checks: the model (404), max_tokens against the context, an empty prompt or
   conversation, the prompt's length, then the sampling parameters (n, temperature, top_p,
   max_tokens).

Checks that vLLM only makes once the stream has started (sample logprobs above 20, token ids
outside the vocabulary) are marked `in_band`: a streaming client gets them inside a 200 event
stream, everyone else as a plain 400.

Reproduced for the common shapes only: the exact lists of pydantic's union errors for malformed
chat messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from engine.simulator.chat import Message

MAX_STOP_STRINGS = 4  # vLLM 0.32's limit on a request's `stop` list
DEFAULT_MAX_TOKENS = 16
MAX_LOGPROBS = 20
VOCAB_SIZE = 32_000  # token ids at or above are out of vocabulary (as in Llama 2)
_SHOWN_ERRORS = 10  # FastAPI's message lists this many validation errors, then "...and N more errors"


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
    prompt_tokens: tuple[int, ...] = ()  # per prompt


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
    prompt_tokens: int = 0  # the chat template applied


def parse_completion_request(body: bytes, served_model: str, max_model_len: int,
                             count: Callable[[str], int]) -> CompletionRequest:  # fmt: skip
    """`count` gives a text prompt's tokens (token-id prompts count their ids)."""
    data = _decode(body)
    if data.get("prompt") in (None, "") and data.get("prompt_embeds") is None:
        raise APIError(400, "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)",
                       param="prompt")  # fmt: skip
    _check_stream_options(data)
    f = _Fields(data)
    model = f.str("model")
    prompts = f.prompt("prompt")
    logprobs = f.int("logprobs")
    max_tokens = f.int("max_tokens")
    common = _Common(f)
    f.check()
    _check_model(model, served_model)
    _check_max_tokens("max_tokens", max_tokens, max_model_len)
    if not prompts:
        raise APIError(400, "You must pass at least one prompt")
    if any(len(p) == 0 for p in prompts):
        raise APIError(400, "The decoder prompt cannot be empty")
    counts = tuple(count(p) if isinstance(p, str) else len(p) for p in prompts)
    for tokens in counts:
        check_prompt_length(tokens, max_model_len)
    n, temperature = _check_sampling(common.n, common.temperature, common.top_p, max_tokens)
    stream = bool(common.stream)
    if logprobs is not None and logprobs > MAX_LOGPROBS:
        raise _param_error("logprobs", f"Requested sample logprobs of {logprobs}, which is greater than max "
                           f"allowed: {MAX_LOGPROBS}", logprobs, in_band=stream)  # fmt: skip
    for prompt in prompts:
        for token in prompt if isinstance(prompt, tuple) else ():
            if not 0 <= token < VOCAB_SIZE:
                raise APIError(400, f"Token id {token} is out of vocabulary", in_band=stream)
    return CompletionRequest(prompts=prompts, n=n, max_tokens=max_tokens, temperature=temperature, stream=stream,
                             prompt_tokens=counts, **common.passed_on())  # fmt: skip


def parse_chat_request(body: bytes, served_model: str, max_model_len: int,
                       count: Callable[[tuple[Message, ...]], int]) -> ChatRequest:  # fmt: skip
    """`count` gives the prompt's tokens once the chat template is applied to the messages."""
    data = _decode(body)
    messages = data.get("messages", [])
    if not isinstance(messages, list | str | dict):  # vLLM iterates them in a "before" validator
        raise APIError(400, f"'{type(messages).__name__}' object is not iterable")
    _check_stream_options(data)
    f = _Fields(data)
    messages = f.messages("messages")
    model = f.str("model")
    max_tokens = f.int("max_tokens")
    max_completion_tokens = f.int("max_completion_tokens")
    common = _Common(f)
    f.check()
    _check_model(model, served_model)
    limit, param = (max_completion_tokens, "max_completion_tokens") if max_completion_tokens is not None else \
                   (max_tokens, "max_tokens")  # fmt: skip
    _check_max_tokens(param, limit, max_model_len)
    if not messages:
        raise APIError(400, "Cannot apply chat template to an empty conversation. Provide at least one message.")
    tokens = count(messages)
    check_prompt_length(tokens, max_model_len)
    n, temperature = _check_sampling(common.n, common.temperature, common.top_p, limit)
    return ChatRequest(messages=messages, n=n, max_tokens=limit, temperature=temperature, stream=bool(common.stream),
                       prompt_tokens=tokens, **common.passed_on())  # fmt: skip


class _Common:
    """The sampling and streaming fields both endpoints take, read in vLLM's field order (which
    is the order of its validation errors)."""

    def __init__(self, f: _Fields):
        self.n = f.int("n")
        self.seed = f.int("seed")
        self.stop = f.stop("stop")
        self.stream = f.bool("stream")
        self.options = f.options("stream_options")
        self.temperature = f.float("temperature")
        self.top_p = f.float("top_p")
        self.include_stop = f.bool("include_stop_str_in_output")

    def passed_on(self) -> dict:
        """The request's fields that need no check of their own."""
        options = self.options or {}
        return {
            "stop": self.stop, "seed": self.seed, "include_stop_str_in_output": bool(self.include_stop),
            "include_usage": bool(options.get("include_usage")),
            "continuous_usage": bool(options.get("include_usage") and options.get("continuous_usage_stats")),
        }  # fmt: skip


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


# -- vLLM's own checks ---------------------------------------------------------------------------


def _check_stream_options(data: dict) -> None:
    if data.get("stream_options") and not data.get("stream"):  # truthiness, as vLLM tests it: `{}` passes
        raise APIError(400, "Stream options can only be defined when `stream=True`. (parameter=stream_options)",
                       param="stream_options")  # fmt: skip


def _check_model(model: str | None, served_model: str) -> None:
    if model is not None and model != served_model:
        raise APIError(404, f"The model `{model}` does not exist. Valid aliases: {served_model}.", "NotFoundError",
                       "model")  # fmt: skip


def _check_max_tokens(param: str, value: int | None, max_model_len: int) -> None:
    if value is not None and value > max_model_len:
        message = f"{param}={value} cannot be greater than max_model_len={max_model_len}."
        raise _param_error(param, message + " Please request fewer output tokens.", value)


def _check_sampling(n: int | None, temperature: float | None, top_p: float | None,
                    max_tokens: int | None) -> tuple[int, float]:  # fmt: skip
    """SamplingParams' checks, in its order; returns n and temperature with their defaults."""
    n = 1 if n is None else n
    if n < 1:
        raise APIError(400, f"n must be at least 1, got {n}.")
    temperature = 1.0 if temperature is None else temperature
    if temperature < 0:
        raise _param_error("temperature", f"temperature must be non-negative, got {temperature}.", temperature)
    if top_p is not None and not 0 < top_p <= 1:
        raise _param_error("top_p", f"top_p must be in (0, 1], got {top_p}.", top_p)
    if max_tokens is not None and max_tokens < 1:  # also for max_completion_tokens: vLLM names max_tokens
        raise _param_error("max_tokens", f"max_tokens must be at least 1, got {max_tokens}.", max_tokens)
    return n, temperature


def _param_error(param: str, message: str, value, in_band: bool = False) -> APIError:
    return APIError(400, f"{message} (parameter={param}, value={value})", param=param, in_band=in_band)


# -- FastAPI/pydantic ------------------------------------------------------------------------------


def _decode(body: bytes) -> dict:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson's messages differ from the stdlib's, which pydantic reports: ask the stdlib.
        try:
            json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            pos, msg = getattr(exc, "pos", 0), getattr(exc, "msg", "Invalid UTF-8")
            raise _validation_error([_error("json_invalid", f"body.{pos}", "JSON decode error", {},
                                            ctx={"error": msg})]) from None  # fmt: skip
        raise _validation_error([_error("json_invalid", "body", "JSON decode error", {})]) from None
    if not isinstance(data, dict):
        raise _validation_error([_error("model_attributes_type", "body", "Input should be a valid dictionary or "
                                        "object to extract fields from", data)])  # fmt: skip
    return data


def _shown(value) -> str:
    """How vLLM shows a rejected input: containers by size, anything else as its str()."""
    if isinstance(value, dict):
        return f"<dict of {len(value)} items>"
    if isinstance(value, list):
        return f"<list of {len(value)} items>"
    return str(value)


def _error(type: str, loc: str, msg: str, value, ctx: dict | None = None) -> dict:
    error = {"type": type, "loc": loc, "msg": msg, "input": _shown(value)}
    if ctx is not None:
        error["ctx"] = ctx
    return error


def _validation_error(errors: list[dict]) -> APIError:
    # FastAPI's request validation, as vLLM words it: note the type "Bad Request", not "BadRequestError".
    count = len(errors)
    lines = [repr(e) for e in errors[:_SHOWN_ERRORS]]
    if count > _SHOWN_ERRORS:
        lines.append(f"...and {count - _SHOWN_ERRORS} more errors")
    message = f"{count} validation error{'s' if count != 1 else ''}:\n  " + "\n  ".join(lines)
    return APIError(400, message, "Bad Request", errors[0]["loc"])


def _int_errors(value, loc: str) -> list[dict]:
    """pydantic's lax int: bools, integral floats and numeric strings pass."""
    if isinstance(value, int):
        return []
    if isinstance(value, float):
        if value.is_integer():
            return []
        return [_error("int_from_float", loc, "Input should be a valid integer, got a number with a fractional part",
                       value)]  # fmt: skip
    if isinstance(value, str):
        try:
            int(value.strip())
            return []
        except ValueError:
            return [_error("int_parsing", loc, "Input should be a valid integer, unable to parse string as an integer",
                           value)]  # fmt: skip
    return [_error("int_type", loc, "Input should be a valid integer", value)]


_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
_ROLES = ("developer", "system", "user", "assistant", "tool", "function")


class _Fields:
    """The body's fields validated one by one, errors collected in order; `check` raises them."""

    def __init__(self, data: dict):
        self.data = data
        self.errors: list[dict] = []

    def check(self) -> None:
        if self.errors:
            raise _validation_error(self.errors)

    def _fail(self, errors: list[dict]) -> None:
        self.errors.extend(errors)

    def int(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        errors = _int_errors(value, f"body.{name}")
        self._fail(errors)
        return None if errors else int(value.strip() if isinstance(value, str) else value)

    def float(self, name: str) -> float | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                self._fail([_error("float_parsing", f"body.{name}", "Input should be a valid number, unable to parse "
                                   "string as a number", value)])  # fmt: skip
                return None
        self._fail([_error("float_type", f"body.{name}", "Input should be a valid number", value)])
        return None

    def bool(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        kind = "bool_parsing" if isinstance(value, str) else "bool_type"
        msg = "Input should be a valid boolean" + (", unable to interpret input" if isinstance(value, str) else "")
        self._fail([_error(kind, f"body.{name}", msg, value)])
        return None

    def str(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None or isinstance(value, str):
            return value
        self._fail([_error("string_type", f"body.{name}", "Input should be a valid string", value)])
        return None

    def options(self, name: str) -> dict | None:
        value = self.data.get(name)
        if value is None or isinstance(value, dict):
            return value
        self._fail([_error("model_attributes_type", f"body.{name}", "Input should be a valid dictionary or object "
                           "to extract fields from", value)])  # fmt: skip
        return None

    def stop(self, name: str) -> tuple[str, ...]:
        """str | list[str] of at most MAX_STOP_STRINGS (vLLM 0.32 refuses a fifth, capture 86)."""
        value = self.data.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        loc = f"body.{name}"
        if isinstance(value, list) and all(isinstance(s, str) for s in value):
            if len(value) <= MAX_STOP_STRINGS:
                return tuple(value)
            self._fail([
                _error("string_type", loc, "Input should be a valid string", value),
                _error("too_long", loc, f"List should have at most {MAX_STOP_STRINGS} items after validation, not "
                       f"{len(value)}", value, {"field_type": "List", "max_length": MAX_STOP_STRINGS,
                                                "actual_length": len(value)}),
            ])  # fmt: skip
            return ()
        errors = [_error("string_type", loc, "Input should be a valid string", value)]
        if isinstance(value, list):
            errors += [_error("string_type", f"{loc}.{i}", "Input should be a valid string", s)
                       for i, s in enumerate(value) if not isinstance(s, str)]  # fmt: skip
        else:
            errors.append(_error("list_type", loc, "Input should be a valid list", value))
        self._fail(errors)
        return ()

    def prompt(self, name: str) -> tuple[str | tuple[int, ...], ...]:
        """list[int] | list[list[int]] | str | list[str]: the errors of every member, in order."""
        value = self.data.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        loc = f"body.{name}"
        if isinstance(value, list) and all(isinstance(p, str) for p in value):
            return tuple(value)
        if isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return (tuple(value),) if value else ()
        as_ids: list[dict] = []
        as_lists: list[dict] = []
        as_texts: list[dict] = []
        if isinstance(value, list):
            for i, item in enumerate(value):
                as_ids += _int_errors(item, f"{loc}.{i}")
                if isinstance(item, list):
                    for j, token in enumerate(item):
                        as_lists += _int_errors(token, f"{loc}.{i}.{j}")
                else:
                    as_lists.append(_error("list_type", f"{loc}.{i}", "Input should be a valid list", item))
                if not isinstance(item, str):
                    as_texts.append(_error("string_type", f"{loc}.{i}", "Input should be a valid string", item))
        else:
            as_ids = as_lists = as_texts = [_error("list_type", loc, "Input should be a valid list", value)]
        if not as_lists:
            return tuple(tuple(int(t) for t in p) for p in value)
        if not as_ids:
            return (tuple(int(t) for t in value),)
        self._fail(as_ids + as_lists + [_error("string_type", loc, "Input should be a valid string", value)]
                   + as_texts)  # fmt: skip
        return ()

    def messages(self, name: str) -> tuple[Message, ...]:
        """A list of messages: {"role", "content"}, content a string or a list of text parts."""
        if name not in self.data:
            self._fail([_error("missing", f"body.{name}", "Field required", self.data)])
            return ()
        value = self.data[name]
        loc = f"body.{name}"
        if not isinstance(value, list):
            self._fail([_error("list_type", loc, "Input should be a valid list", value)])
            return ()
        out = []
        for i, message in enumerate(value):
            errors = _message_errors(message, f"{loc}.{i}")
            if errors:
                self._fail(errors)
                continue
            content = message.get("content")
            if isinstance(content, list):
                content = "\n".join(p["text"] for p in content)
            out.append(Message(message["role"], content or ""))
        return tuple(out)


def _message_errors(message, loc: str) -> list[dict]:
    """pydantic's errors for one message of the union vLLM accepts (only what matters here:
    a role that is a string, content that is a string or text parts, None for the assistant)."""
    members = ("ChatCompletionDeveloperMessageParam", "ChatCompletionSystemMessageParam",
               "ChatCompletionUserMessageParam", "ChatCompletionAssistantMessageParam",
               "ChatCompletionToolMessageParam", "ChatCompletionFunctionMessageParam",
               "CustomChatCompletionMessageParam")  # fmt: skip
    if not isinstance(message, dict):
        return [_error("dict_type", f"{loc}.{m}", "Input should be a valid dictionary", message) for m in members] + [
            _error("model_attributes_type", f"{loc}.Message", "Input should be a valid dictionary or object to "
                   "extract fields from", message)]  # fmt: skip
    role, content = message.get("role"), message.get("content")
    text_parts = isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content)
    content_ok = isinstance(content, str) or text_parts or (content is None and role == "assistant")
    if isinstance(role, str) and content_ok:
        return []
    errors: list[dict] = []

    def role_errors(member: str, expected: str) -> list[dict]:
        at = f"{loc}.{member}.role"
        if "role" not in message:
            return [_error("missing", at, "Field required", message)]
        if role == expected:
            return []
        return [_error("literal_error", at, f"Input should be '{expected}'", role, ctx={"expected": f"'{expected}'"})]

    def content_errors(member: str, optional: bool = False, texts: bool = True) -> list[dict]:
        if content_ok or (optional and content is None):
            return []
        at = f"{loc}.{member}.content"
        errors = [_error("string_type", at, "Input should be a valid string", content)]
        return errors + [_error("iterable_type", at, "Input should be iterable", content)] if texts else errors

    for member, expected in zip(members[:3], _ROLES[:3]):
        errors += content_errors(member) + role_errors(member, expected)
    errors += role_errors(members[3], "assistant") + content_errors(members[3], optional=True)
    errors += content_errors(members[4]) + role_errors(members[4], "tool")
    if "tool_call_id" not in message:
        errors.append(_error("missing", f"{loc}.{members[4]}.tool_call_id", "Field required", message))
    if "name" not in message:
        errors.append(_error("missing", f"{loc}.{members[5]}.name", "Field required", message))
    errors += role_errors(members[5], "function") + content_errors(members[5], optional=True, texts=False)
    at = f"{loc}.{members[6]}.role"
    if "role" not in message:
        errors.append(_error("missing", at, "Field required", message))
    elif not isinstance(role, str):
        errors.append(_error("string_type", at, "Input should be a valid string", role))
    errors += content_errors(members[6])
    if "author" not in message:
        errors.append(_error("missing", f"{loc}.Message.author", "Field required", message))
    errors.append(_error("missing", f"{loc}.Message.content", "Field required", message))  # (never shown: 11th+)
    return errors
