"""Chat in the simulator: the synthetic model's instruct-style answers (pure), and
/v1/chat/completions over HTTP (streams against bodies, seeds, limits, stop strings, faults).
Comparisons with the real vLLM transcripts live in test_fidelity.py."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections import Counter

import aiohttp
import pytest
import uvloop

from engine.tasks import extract_completion, load_problems
from engine.tasks.chat import fenced_messages as chat_messages
from engine.tasks.humaneval import SYSTEM_PROMPT as DEFAULT_SYSTEM_PROMPT
from vllm_sim import SimulatedFleet, SyntheticModel
from vllm_sim.api.protocol import APIError, parse_chat_request
from vllm_sim.faults.spec import KINDS
from vllm_sim.gpu.plans import PlanCache
from vllm_sim.model.instruct import FORMS, Message, function_prefixes, prompt_tokens

MODEL = "simulated-llama-8b"


@pytest.fixture(scope="module")
def problems():
    return load_problems()


@pytest.fixture(scope="module")
def model(problems):
    return SyntheticModel(problems, seed=0)


def engine_messages(prompt: str) -> list[Message]:
    """What `engine run --api chat` sends for a problem."""
    return [Message(m["role"], m["content"]) for m in chat_messages(DEFAULT_SYSTEM_PROMPT, prompt)]


def answer(sample) -> str:
    return "".join(sample.head)


# -- the synthetic model's chat (pure) ---------------------------------------------------------


def test_prompt_tokens_follow_the_chat_template():
    assert prompt_tokens([Message("user", "hi")]) == 11  # usage.prompt_tokens of transcripts 30 and 31
    with_system = prompt_tokens([Message("system", "Be brief."), Message("user", "hi")])
    assert with_system > 11 + 4


def test_the_problem_is_found_in_a_fence_or_bare(problems, model):
    p = problems[3]
    assert model.chat_problem(engine_messages(p.prompt)) is p
    assert model.chat_problem([Message("user", p.prompt)]) is p  # bare
    assert model.chat_problem([Message("user", "Please complete:\n```py\n" + p.prompt + "```\nThanks")]) is p
    assert model.chat_problem([Message("user", "hi")]) is None
    assert model.chat_problem([Message("system", p.prompt)]) is None  # only user messages count
    # the last user message decides
    assert (
        model.chat_problem([Message("user", p.prompt), Message("assistant", "ok"), Message("user", "hi")])
        is None
    )


def test_right_or_wrong_exactly_as_the_completions_model(problems, model):
    for p in problems[:40]:
        for seed in range(12):
            assert (
                model.chat_sample(engine_messages(p.prompt), seed).kind == model.sample(p.prompt, seed).kind
            )
        greedy = model.chat_sample(engine_messages(p.prompt), None)
        assert greedy.kind == model.sample(p.prompt, None).kind


def test_answers_are_deterministic_and_vary_with_the_seed(problems):
    a, b = SyntheticModel(problems, seed=0), SyntheticModel(problems, seed=0)
    messages = engine_messages(problems[12].prompt)
    texts = {answer(a.chat_sample(messages, s)) for s in range(20)}
    assert len(texts) > 3
    for s in range(20):
        assert a.chat_sample(messages, s).head == b.chat_sample(messages, s).head


def test_an_answer_is_a_sentence_then_the_function_in_a_python_fence(problems, model):
    forms = Counter()
    for p in problems[:30]:
        for seed in range(8):
            sample = model.chat_sample(engine_messages(p.prompt), seed)
            assert sample.eos and sample.key[0] == "chat"
            text = answer(sample)
            intro, _, rest = text.partition("\n\n```python\n")
            assert intro and "\n" not in intro and rest, text
            code = rest.partition("```")[0]
            completion = extract_completion(p, text)
            forms[sample.key[4]] += 1
            if sample.key[4] == "body_only":
                assert completion == code and code.startswith("    ")
            else:
                assert completion == "\n" + code
                if sample.key[4] in ("function", "no_docstring"):  # stored completions start "\ndef entry("
                    assert completion.startswith(f"\ndef {p.payload['entry_point']}(")
    assert set(forms) == set(FORMS), forms


def test_function_prefixes_keep_or_drop_imports_and_docstrings(problems):
    p = problems[0]  # from typing import List ... def has_close_elements(...): """..."""
    prefixes = function_prefixes(p.prompt, p.payload["entry_point"])
    assert prefixes["whole_prompt"].startswith("from typing import List")
    assert prefixes["function"].startswith("def has_close_elements(") and '"""' in prefixes["function"]
    assert (
        prefixes["no_docstring"]
        == "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
    )
    odd = problems[115]  # its docstring comes after an `import math` in the body: the import stays
    assert (
        function_prefixes(odd.prompt, odd.payload["entry_point"])["no_docstring"]
        == "def max_fill(grid, capacity):\n"
        "    import math\n"
    )


def test_other_chats_get_generic_sentences_that_end(model):
    sample = model.chat_sample([Message("user", "hi")], 3)
    text = answer(sample)
    assert sample.kind == "generic" and sample.eos and text.startswith("Hello!") and text.endswith(".")
    assert 10 < len(sample.head) < 200


def test_the_plan_ends_at_the_end_of_sequence_and_releases_what_it_held(problems, model):
    plans = PlanCache(model)
    sample = model.chat_sample(engine_messages(problems[0].prompt), 1)
    plan = plans.get(sample, ())
    whole = answer(sample)
    assert plan.text(5000) == whole
    assert plan.stop_step == len(sample.head) and plan.stop_reason is None  # EOS: "stop", no stop_reason
    assert json.loads(plan.deltas[plan.stop_step]) == ""
    # with a stop string that never matches, the held-back tail comes out with the EOS token
    held = plans.get(sample, ("@@@@@@",))
    held.extend(5000)
    streamed = "".join(json.loads(d) for d in held.deltas)
    assert streamed == whole and json.loads(held.deltas[held.stop_step]) == whole[-5:]
    # a stop string that matches ends it earlier, as for completions
    cut = plans.get(sample, ("```",))
    assert cut.text(5000) == whole.partition("```")[0] and cut.stop_reason == "```"


# DEVELOPMENT CHECK on the simulator's own output (not untrusted code), as in test_model.py


def _passes(problem, completion: str) -> bool:
    program = (
        problem.prompt
        + completion
        + "\n"
        + problem.payload["test"]
        + "\n"
        + f"check({problem.payload['entry_point']})"
    )
    try:
        done = subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, timeout=10, cwd="/")
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def test_extracted_answers_pass_when_canonical_and_fail_when_wrong(problems, model):
    outcomes: Counter = Counter()
    for p in problems[::16]:
        for seed in range(24):
            sample = model.chat_sample(engine_messages(p.prompt), seed)
            if sample.kind == "infinite_loop":
                continue
            passed = _passes(p, extract_completion(p, answer(sample)))
            outcomes[sample.kind == "canonical", passed] += 1
    assert outcomes[True, False] == 0, outcomes
    wrong = outcomes[False, False] + outcomes[False, True]
    assert outcomes[True, True] > 0 and outcomes[False, False] >= 0.85 * wrong


# -- request validation (messages and limits; vLLM's messages compared in the fidelity tests) ---------


def parse(**body) -> object:
    return parse_chat_request(json.dumps(body).encode(), MODEL, 1024, prompt_tokens)


def test_max_completion_tokens_wins_over_max_tokens():
    assert (
        parse(messages=[{"role": "user", "content": "hi"}], max_tokens=8, max_completion_tokens=3).max_tokens
        == 3
    )
    assert parse(messages=[{"role": "user", "content": "hi"}], max_tokens=8).max_tokens == 8
    assert parse(messages=[{"role": "user", "content": "hi"}]).max_tokens is None


def test_text_parts_are_joined_and_null_content_is_empty():
    req = parse(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": None},
        ]
    )
    assert req.messages == (Message("user", "a\nb"), Message("assistant", ""))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": "hi"},
        {"messages": [{"content": "hi"}]},
        {"messages": [{"role": "user", "content": 5}]},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000},
        {"messages": [{"role": "user", "content": "hi"}], "n": 0},
        {"messages": [{"role": "user", "content": "hi"}], "model": "nope"},
    ],
)
def test_bad_requests_are_refused(body):
    with pytest.raises(APIError):
        parse(**body)


# -- over HTTP -----------------------------------------------------------------------------------


def fast_fleet(problems, servers: int = 1, **settings) -> SimulatedFleet:
    settings.setdefault("tokens_per_second", 20000)
    settings.setdefault("min_step_s", 0.002)
    return SimulatedFleet(servers, problems=problems, **settings)


def run(coro, timeout: float = 60):
    return uvloop.run(asyncio.wait_for(coro, timeout))


async def chat(session: aiohttp.ClientSession, url: str, **body) -> dict:
    async with session.post(url + "/v1/chat/completions", json=body) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"] == "application/json"
        return await r.json()


async def chat_stream(session: aiohttp.ClientSession, url: str, **body) -> list[dict]:
    async with session.post(url + "/v1/chat/completions", json={**body, "stream": True}) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        raw = await r.read()
    events = [e[len(b"data: ") :] for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    return [json.loads(e) for e in events[:-1]]


def per_choice(chunks: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            out.setdefault(choice["index"], []).append(choice)
    return out


def contents(chunks: list[dict]) -> dict[int, str]:
    return {i: "".join(c["delta"].get("content") or "" for c in seq) for i, seq in per_choice(chunks).items()}


def test_streamed_answers_equal_the_bodies_and_usage_adds_up(problems):
    async def main():
        async with fast_fleet(problems[:5]) as fleet, aiohttp.ClientSession() as s:
            url = fleet.urls[0]
            for p in problems[:3]:
                body = dict(
                    messages=chat_messages(DEFAULT_SYSTEM_PROMPT, p.prompt), n=5, seed=21, max_tokens=512
                )
                whole = await chat(s, url, **body)
                assert whole["object"] == "chat.completion" and re.fullmatch(
                    r"chatcmpl-[0-9a-f]{16}", whole["id"]
                )
                chunks = await chat_stream(
                    s, url, **body, stream_options={"include_usage": True, "continuous_usage_stats": True}
                )
                assert contents(chunks) == {c["index"]: c["message"]["content"] for c in whole["choices"]}
                seqs = per_choice(chunks)
                finishes = [seqs[i][-1]["finish_reason"] for i in range(5)]
                assert finishes == [c["finish_reason"] for c in whole["choices"]] == ["stop"] * 5
                assert all(c["stop_reason"] is None for c in whole["choices"])  # end of sequence
                running = [c for c in chunks if c["choices"] and "role" not in c["choices"][0]["delta"]]
                last = {c["choices"][0]["index"]: c["usage"]["completion_tokens"] for c in running}
                assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == sum(
                    last.values()
                )
                assert whole["usage"]["completion_tokens"] == sum(last.values())
                assert whole["usage"]["prompt_tokens"] == chunks[-1]["usage"]["prompt_tokens"]
                # one token per content chunk, the end-of-sequence token included
                assert all(len(seqs[i]) - 1 == last[i] for i in range(5))

    run(main())


def test_every_choice_opens_with_its_role_chunk_before_any_content(problems):
    async def main():
        async with fast_fleet(problems[:5]) as fleet, aiohttp.ClientSession() as s:
            body = dict(messages=[{"role": "user", "content": "hi"}], n=4, seed=1, max_tokens=6)
            for options in (
                None,
                {"include_usage": True},
                {"include_usage": True, "continuous_usage_stats": True},
            ):
                extra = {"stream_options": options} if options else {}
                chunks = await chat_stream(s, fleet.urls[0], **body, **extra)
                roles, rest = chunks[:4], chunks[4:]
                assert [c["choices"][0]["index"] for c in roles] == [0, 1, 2, 3]
                for c in roles:
                    assert c["choices"][0] == {
                        "index": c["choices"][0]["index"],
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                    assert list(c)[-2:] == ["prompt_token_ids", "prompt_text"]
                    assert ("usage" in c) == bool(options and options.get("continuous_usage_stats"))
                for c in rest:
                    assert "prompt_token_ids" not in c and "prompt_text" not in c
                    for choice in c["choices"]:
                        assert list(choice["delta"]) == ["content"]
                        keys = ["index", "delta", "logprobs", "finish_reason"]
                        keys += ["stop_reason", "token_ids"] if choice["finish_reason"] else ["token_ids"]
                        assert list(choice) == keys
                fingerprinted = [c for c in chunks if "system_fingerprint" in c]
                if options:  # only the usage chunk
                    assert fingerprinted == [chunks[-1]] and chunks[-1]["choices"] == []
                    assert list(chunks[-1]["usage"]) == ["prompt_tokens", "total_tokens", "completion_tokens"]
                else:  # each choice's finishing chunk
                    assert len(fingerprinted) == 4 and all(
                        c["choices"][0]["finish_reason"] for c in fingerprinted
                    )

    run(main())


def test_choice_i_with_seed_s_is_choice_0_with_seed_s_plus_i(problems):
    async def main():
        async with fast_fleet(problems[:8]) as fleet, aiohttp.ClientSession() as s:
            url, messages = fleet.urls[0], chat_messages(DEFAULT_SYSTEM_PROMPT, problems[5].prompt)
            many = await chat(s, url, messages=messages, n=4, seed=40)
            for i in range(4):
                one = await chat(s, url, messages=messages, n=1, seed=40 + i)
                assert one["choices"][0]["message"] == many["choices"][i]["message"]
            greedy = await chat(s, url, messages=messages, n=3, temperature=0)
            assert len({c["message"]["content"] for c in greedy["choices"]}) == 1

    run(main())


def test_max_tokens_and_max_completion_tokens_cut_the_answer(problems):
    async def main():
        async with fast_fleet(problems[:5]) as fleet, aiohttp.ClientSession() as s:
            url, messages = fleet.urls[0], chat_messages(DEFAULT_SYSTEM_PROMPT, problems[2].prompt)
            full = await chat(s, url, messages=messages, seed=3)
            assert full["choices"][0]["finish_reason"] == "stop"
            limits = (
                {"max_tokens": 7},
                {"max_completion_tokens": 7},
                {"max_tokens": 99, "max_completion_tokens": 7},
            )
            for limit in limits:
                cut = await chat(s, url, messages=messages, seed=3, **limit)
                assert (
                    cut["choices"][0]["finish_reason"] == "length"
                    and cut["choices"][0]["stop_reason"] is None
                )
                assert cut["usage"]["completion_tokens"] == 7
                assert full["choices"][0]["message"]["content"].startswith(
                    cut["choices"][0]["message"]["content"]
                )
                chunks = await chat_stream(s, url, messages=messages, seed=3, **limit)
                assert contents(chunks)[0] == cut["choices"][0]["message"]["content"]
                assert per_choice(chunks)[0][-1]["finish_reason"] == "length"
            # exactly as many tokens as the answer has, the end of sequence included: still "stop"
            exact = await chat(
                s, url, messages=messages, seed=3, max_tokens=full["usage"]["completion_tokens"]
            )
            assert exact["choices"][0] == full["choices"][0]

    run(main())


def test_stop_strings_apply_to_chat(problems):
    async def main():
        async with fast_fleet(problems[:5]) as fleet, aiohttp.ClientSession() as s:
            url, messages = fleet.urls[0], chat_messages(DEFAULT_SYSTEM_PROMPT, problems[2].prompt)
            full = (await chat(s, url, messages=messages, seed=3))["choices"][0]["message"]["content"]
            cut = await chat(s, url, messages=messages, seed=3, stop=["```"])
            choice = cut["choices"][0]
            assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", "```")
            assert choice["message"]["content"] == full.partition("```")[0]
            chunks = await chat_stream(s, url, messages=messages, seed=3, stop=["```"])
            last = per_choice(chunks)[0][-1]
            assert contents(chunks)[0] == choice["message"]["content"]
            assert (last["finish_reason"], last["stop_reason"]) == ("stop", "```")

    run(main())


def test_chat_requests_suffer_faults_too(problems):
    async def main():
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 30, "stream": True}
        async with fast_fleet(problems[:5], faults="http503=1") as fleet, aiohttp.ClientSession() as s:
            async with s.post(fleet.urls[0] + "/v1/chat/completions", json=body) as r:
                assert r.status == 503 and (await r.json())["error"]["code"] == 503
            assert fleet.fault_counts() == {**dict.fromkeys(KINDS, 0), "http503": 1}
        async with fast_fleet(problems[:5], faults="reset=1:after=3") as fleet, aiohttp.ClientSession() as s:
            got = []
            with pytest.raises(aiohttp.ClientPayloadError):
                async with s.post(fleet.urls[0] + "/v1/chat/completions", json=body) as r:
                    while True:
                        got.append(await r.content.readuntil(b"\n\n"))
            assert len(got) == 3 and b'"role":"assistant"' in got[0]
            assert fleet.fault_counts()["reset"] == 1
        async with fast_fleet(problems[:5], faults="inband=1:after=2") as fleet, aiohttp.ClientSession() as s:
            async with s.post(fleet.urls[0] + "/v1/chat/completions", json=body) as r:
                events = [e for e in (await r.read()).split(b"\n\n") if e]
            assert b'"error": {' in events[2] and events[-1] == b"data: [DONE]"

    run(main())


def test_chat_and_completions_share_the_batch_and_its_metrics(problems):
    async def main():
        async with (
            SimulatedFleet(
                1, problems=problems[:5], tokens_per_second=400, min_step_s=0.01, max_num_seqs=4
            ) as fleet,
            aiohttp.ClientSession() as s,
        ):
            url, engine = fleet.urls[0], fleet.servers[0].api.engine
            messages = chat_messages(DEFAULT_SYSTEM_PROMPT, problems[0].prompt)
            chat_task = asyncio.create_task(chat(s, url, messages=messages, n=4, seed=1))
            while len(engine.running) < 4:  # the chat's sequences fill the batch...
                await asyncio.sleep(0.005)
            body = {"prompt": "a", "max_tokens": 5}
            completion_task = asyncio.create_task(s.post(url + "/v1/completions", json=body))
            while engine.num_waiting() < 1:  # ...and a completion waits for room in it
                await asyncio.sleep(0.005)
            answer = await chat_task
            async with await completion_task as r:
                assert r.status == 200
            async with s.get(url + "/metrics") as r:
                text = await r.text()
            generated = float(
                re.search(r"^vllm:generation_tokens_total\{[^}]*\} (\S+)$", text, re.M).group(1)
            )
            assert generated == answer["usage"]["completion_tokens"] + 5

    run(main())
