"""One request over HTTP: a `Request` in, its finished samples out, as each choice finishes.

The sweep's only door to the fleet's wire protocol (request body, the streaming client, the
OpenAI stream assembler, chat answers). `generate.py` sees it through the `Client` protocol, so
tests drive the sweep with a scripted client instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from engine.client import credible_completion_tokens, request_body, stream_completion, timeout_for
from engine.config import SamplingSettings, Scheduling
from engine.records import Sample
from engine.sweep.plan import Request, problem_seed
from engine.tasks import chat_messages, extract_completion
from engine.wire.openai import FinishedChoice, StreamAssembler

_ASKED = SamplingSettings()  # the defaults, written in engine.config


@dataclass(frozen=True, slots=True)
class Sampling:
    """What decides the samples themselves; a run resumes only with the same values."""

    model: str
    dataset: str
    temperature: float = _ASKED.temperature
    top_p: float = _ASKED.top_p
    max_tokens: int = _ASKED.max_tokens
    stop: tuple[str, ...] = ()  # the task kind's, for /v1/completions
    seed: int = _ASKED.seed
    api: str = _ASKED.api  # or "chat": /v1/chat/completions, code taken from the answer
    system_prompt: str = ""  # chat only

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stop": list(self.stop),
            "seed": self.seed,
            "api": self.api,
            "system_prompt": self.system_prompt,
        }


class StreamingClient:
    """The `Client` of a real fleet: OpenAI-compatible streaming completions (or chat)."""

    def __init__(self, session: aiohttp.ClientSession, sampling: Sampling, options: Scheduling):
        self.session = session
        self.sampling = sampling
        self._timeout = timeout_for(options.idle_timeout_s, options.request_timeout_s)

    async def stream(
        self,
        url: str,
        request: Request,
        on_sample: Callable[[Sample], None],
        on_tokens: Callable[[int], None],
    ) -> None:
        """Stream `request` from the server at `url` to its end: `on_sample` for each choice as
        it finishes, `on_tokens(k)` as tokens arrive. Raises StreamError when the request
        fails; the samples not given to `on_sample` by then are owed."""
        problem, s = request.problem, self.sampling
        chat = s.api == "chat"
        body = request_body(
            s.model,
            request.n,
            problem_seed(s.seed, problem.task_id) + request.start,
            prompt=None if chat else problem.prompt,
            messages=chat_messages(problem, s.system_prompt) if chat else None,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            stop=list(s.stop),
        )
        endpoint = url + ("/v1/chat/completions" if chat else "/v1/completions")
        # stop: the server applies only MAX_STOP_STRINGS; max_tokens caps every choice
        assembler = StreamAssembler(request.n, chat=chat, stop=s.stop, max_tokens=s.max_tokens)
        requested_at = time.time()

        def on_choice(choice: FinishedChoice) -> None:
            completion = extract_completion(problem, choice.text) if chat else choice.text
            on_sample(
                Sample(
                    problem.task_id,
                    request.start + choice.index,
                    completion,
                    choice.tokens,
                    choice.finish_reason,
                    url,
                    requested_at,
                    choice.first_token_at,
                    choice.finished_at,
                    response=choice.text if chat else None,
                )
            )

        await stream_completion(self.session, endpoint, body, assembler, on_choice, on_tokens, self._timeout)
        reported = credible_completion_tokens(assembler.usage, assembler.chunks, request.n, s.max_tokens)
        if reported > assembler.chunks:
            on_tokens(reported - assembler.chunks)  # chunks that carried several tokens
