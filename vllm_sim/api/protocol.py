"""Parsing and validating `/v1/completions` and `/v1/chat/completions` bodies the way vLLM 0.32
does. Pure: bytes in, a `CompletionRequest` or `ChatRequest` or an `APIError` out.

Messages, types, params, statuses and their order follow the real server (shared/real-vllm/NOTES.md
and the captures in tests/fixtures/vllm-transcripts and vllm-chat-transcripts):

1. the request model's "before" validators, on the raw JSON (no prompt; stream_options without
   stream; chat messages that cannot be iterated: a vLLM bug answers "'NoneType' object is not
   iterable");
2. pydantic's field validation in lax mode (`validation`): every field's errors, collected in
   field order, as FastAPI reports them ("N validation errors:", at most 10 shown, `param` the
   first `loc`);
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

from collections.abc import Callable
from dataclasses import dataclass

from vllm_sim.api.validation import APIError, Fields, decode_body
from vllm_sim.model.instruct import Message

DEFAULT_MAX_TOKENS = 16
MAX_LOGPROBS = 20
VOCAB_SIZE = 32_000  # token ids at or above are out of vocabulary (as in Llama 2)


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


def parse_completion_request(
    body: bytes, served_model: str, max_model_len: int, count: Callable[[str], int]
) -> CompletionRequest:
    """`count` gives a text prompt's tokens (token-id prompts count their ids)."""
    data = decode_body(body)
    if data.get("prompt") in (None, "") and data.get("prompt_embeds") is None:
        raise APIError(
            400,
            "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)",
            param="prompt",
        )
    _check_stream_options(data)
    f = Fields(data)
    model = f.string("model")
    prompts = f.prompt("prompt")
    logprobs = f.integer("logprobs")
    max_tokens = f.integer("max_tokens")
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
        raise _param_error(
            "logprobs",
            f"Requested sample logprobs of {logprobs}, which is greater than max allowed: {MAX_LOGPROBS}",
            logprobs,
            in_band=stream,
        )
    for prompt in prompts:
        for token in prompt if isinstance(prompt, tuple) else ():
            if not 0 <= token < VOCAB_SIZE:
                raise APIError(400, f"Token id {token} is out of vocabulary", in_band=stream)
    return CompletionRequest(
        prompts=prompts,
        n=n,
        max_tokens=max_tokens,
        temperature=temperature,
        stream=stream,
        prompt_tokens=counts,
        **common.passed_on(),
    )


def parse_chat_request(
    body: bytes, served_model: str, max_model_len: int, count: Callable[[tuple[Message, ...]], int]
) -> ChatRequest:
    """`count` gives the prompt's tokens once the chat template is applied to the messages."""
    data = decode_body(body)
    messages = data.get("messages", [])
    if not isinstance(messages, list | str | dict):  # vLLM iterates them in a "before" validator
        raise APIError(400, f"'{type(messages).__name__}' object is not iterable")
    _check_stream_options(data)
    f = Fields(data)
    messages = f.messages("messages")
    model = f.string("model")
    max_tokens = f.integer("max_tokens")
    max_completion_tokens = f.integer("max_completion_tokens")
    common = _Common(f)
    f.check()
    _check_model(model, served_model)
    limit, param = (
        (max_completion_tokens, "max_completion_tokens")
        if max_completion_tokens is not None
        else (max_tokens, "max_tokens")
    )
    _check_max_tokens(param, limit, max_model_len)
    if not messages:
        raise APIError(
            400, "Cannot apply chat template to an empty conversation. Provide at least one message."
        )
    tokens = count(messages)
    check_prompt_length(tokens, max_model_len)
    n, temperature = _check_sampling(common.n, common.temperature, common.top_p, limit)
    return ChatRequest(
        messages=messages,
        n=n,
        max_tokens=limit,
        temperature=temperature,
        stream=bool(common.stream),
        prompt_tokens=tokens,
        **common.passed_on(),
    )


class _Common:
    """The sampling and streaming fields both endpoints take, read in vLLM's field order (which
    is the order of its validation errors)."""

    def __init__(self, f: Fields):
        self.n = f.integer("n")
        self.seed = f.integer("seed")
        self.stop = f.stop("stop")
        self.stream = f.boolean("stream")
        self.options = f.options("stream_options")
        self.temperature = f.number("temperature")
        self.top_p = f.number("top_p")
        self.include_stop = f.boolean("include_stop_str_in_output")

    def passed_on(self) -> dict:
        """The request's fields that need no check of their own."""
        options = self.options or {}
        return {
            "stop": self.stop,
            "seed": self.seed,
            "include_stop_str_in_output": bool(self.include_stop),
            "include_usage": bool(options.get("include_usage")),
            "continuous_usage": bool(options.get("include_usage") and options.get("continuous_usage_stats")),
        }


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
        raise APIError(
            400,
            "Stream options can only be defined when `stream=True`. (parameter=stream_options)",
            param="stream_options",
        )


def _check_model(model: str | None, served_model: str) -> None:
    if model is not None and model != served_model:
        raise APIError(
            404,
            f"The model `{model}` does not exist. Valid aliases: {served_model}.",
            "NotFoundError",
            "model",
        )


def _check_max_tokens(param: str, value: int | None, max_model_len: int) -> None:
    if value is not None and value > max_model_len:
        message = f"{param}={value} cannot be greater than max_model_len={max_model_len}."
        raise _param_error(param, message + " Please request fewer output tokens.", value)


def _check_sampling(
    n: int | None, temperature: float | None, top_p: float | None, max_tokens: int | None
) -> tuple[int, float]:
    """SamplingParams' checks, in its order; returns n and temperature with their defaults."""
    n = 1 if n is None else n
    if n < 1:
        raise APIError(400, f"n must be at least 1, got {n}.")
    temperature = 1.0 if temperature is None else temperature
    if temperature < 0:
        raise _param_error(
            "temperature", f"temperature must be non-negative, got {temperature}.", temperature
        )
    if top_p is not None and not 0 < top_p <= 1:
        raise _param_error("top_p", f"top_p must be in (0, 1], got {top_p}.", top_p)
    if max_tokens is not None and max_tokens < 1:  # also for max_completion_tokens: vLLM names max_tokens
        raise _param_error("max_tokens", f"max_tokens must be at least 1, got {max_tokens}.", max_tokens)
    return n, temperature


def _param_error(param: str, message: str, value, in_band: bool = False) -> APIError:
    return APIError(400, f"{message} (parameter={param}, value={value})", param=param, in_band=in_band)
