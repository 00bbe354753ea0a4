"""The simulator against real vLLM 0.32: every transcript request is replayed over HTTP and the
answers compared field by field (status, headers that matter, framing, key order, types, the
stream's rules, and exact error bodies). Completions and chat come from the shared captures
(tests/fixtures/vllm-transcripts); more chat and validation cases from
tests/fixtures/vllm-chat-transcripts (see its NOTES.md: another build of the tiny model, so
prompt token counts are not compared there)."""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict

import aiohttp
import orjson
import pytest
import transcripts
import uvloop

from engine.tasks import load_problems
from vllm_sim import SimulatedFleet

TRANSCRIPTS = transcripts.DIR
CHAT_TRANSCRIPTS = TRANSCRIPTS.parent / "vllm-chat-transcripts"
REAL_MODEL = "tiny-llama"
MAX_MODEL_LEN = 1024  # the real server's, so that messages quoting it compare exactly

# -- reading the transcripts (curl -i dumps) --------------------------------------------------


class Http:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def events(self) -> list[bytes]:
        """SSE events' data fields, checking the framing: only `data: ...\\n\\n` events."""
        assert self.body.endswith(b"\n\n"), self.body[-40:]
        events = self.body[:-2].split(b"\n\n")
        assert all(e.startswith(b"data: ") and b"\n" not in e for e in events), "not data-only events"
        return [e[len(b"data: ") :] for e in events]


def parse_dump(raw: bytes) -> Http:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return Http(int(status_line.split()[1]), headers, body)


def transcript(name: str, directory=TRANSCRIPTS) -> Http:
    (path,) = directory.glob(f"{name}_*.txt")
    return parse_dump(path.read_bytes())


def request_body(name: str, directory=TRANSCRIPTS) -> bytes:
    """The body exactly as the capture script sent it (printf added a newline to the file)."""
    (path,) = directory.glob(f"{name}_*.request.json")
    body = path.read_bytes()
    return body[:-1] if body.endswith(b"\n") else body


def expected(body: bytes, model: str) -> bytes:
    return body.replace(REAL_MODEL.encode(), model.encode())


# -- running requests against a simulated server ---------------------------------------------


@pytest.fixture(scope="module")
def problems():
    return load_problems()


def run(coro):
    return uvloop.run(asyncio.wait_for(coro, 60))


async def exchange(problems, requests: list[tuple[str, str, bytes | None]]) -> tuple[list[Http], str]:
    """(method, path, body) -> the simulator's answers, from one fresh server."""
    async with SimulatedFleet(1, problems=problems, max_model_len=MAX_MODEL_LEN, min_step_s=0.002) as fleet:
        out = []
        async with aiohttp.ClientSession() as session:
            for method, path, body in requests:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                async with session.request(method, fleet.urls[0] + path, data=body, headers=headers) as r:
                    out.append(Http(r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()))
        return out, fleet.config.model_name


def replay(
    problems, name: str, path: str = "/v1/completions", directory=TRANSCRIPTS
) -> tuple[Http, Http, str]:
    body = request_body(name, directory)
    data = json.loads(body) if _is_json(body) else None
    if isinstance(data, dict) and data.get("model") == REAL_MODEL:
        data["model"] = "simulated-llama-8b"
        body = orjson.dumps(data)
    (answer,), model = run(exchange(problems, [("POST", path, body)]))
    return transcript(name, directory), answer, model


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
        return True
    except ValueError:
        return False


# -- shape comparisons ---------------------------------------------------------------------------


def shape(value):
    """Key order and JSON types, without the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}, tuple(value)
    if isinstance(value, list):
        return ("list", tuple(sorted({repr(shape(v)) for v in value})))
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def chunk_kind(chunk: dict) -> str:
    if not chunk["choices"]:
        return "usage"
    return "finish" if chunk["choices"][0]["finish_reason"] else "running"


def chunk_shapes(events: list[bytes]) -> dict[str, set]:
    shapes = defaultdict(set)
    for raw in events[:-1]:
        chunk = json.loads(raw)
        # a text or stop_reason that is a string here may be null there (and vice versa): not a shape difference
        for choice in chunk["choices"]:
            choice["stop_reason"] = choice["stop_reason"] or "x"
        shapes[chunk_kind(chunk)].add(repr(shape(chunk)))
    return shapes


def check_stream_rules(events: list[bytes], request: dict, one_token_per_chunk: bool) -> list[dict]:
    """The rules every vLLM completions stream follows; returns the parsed chunks. The real
    server merges tokens into one chunk now and then (`one_token_per_chunk` False)."""
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for raw, chunk in zip(events, chunks):
        assert orjson.dumps(chunk) == raw, "not compact JSON in vLLM's key order"
        assert chunk["object"] == "text_completion"
        assert re.fullmatch(r"cmpl-[0-9a-f]{16}", chunk["id"])
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    n, prompts = request.get("n", 1), request["prompt"]
    n_prompts = len(prompts) if isinstance(prompts, list) and isinstance(prompts[0], str) else 1
    stops = request.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    options = request.get("stream_options") or {}
    include_usage = bool(options.get("include_usage"))
    continuous = include_usage and bool(options.get("continuous_usage_stats"))

    per_choice: dict[int, list[dict]] = defaultdict(list)
    usage_chunks = [c for c in chunks if not c["choices"]]
    for chunk in chunks:
        if chunk["choices"]:
            assert len(chunk["choices"]) == 1, "one choice per chunk"
            per_choice[chunk["choices"][0]["index"]].append(chunk)
    assert sorted(per_choice) == list(range(n * n_prompts))
    counts = {}
    for index, seq in per_choice.items():
        finishes = [c for c in seq if c["choices"][0]["finish_reason"] is not None]
        assert finishes == [seq[-1]], f"choice {index}: finish_reason must come once, in its last chunk"
        last = seq[-1]["choices"][0]
        if last["finish_reason"] == "stop" and stops:
            assert last["stop_reason"] in stops
        else:
            assert last["finish_reason"] == "length" and last["stop_reason"] is None
        assert all(c["choices"][0]["stop_reason"] is None for c in seq[:-1])
        if continuous:
            running = [c["usage"]["completion_tokens"] for c in seq]
            assert running == sorted(running) and len(set(running)) == len(running)
            assert all(
                c["usage"]["total_tokens"] == c["usage"]["prompt_tokens"] + c["usage"]["completion_tokens"]
                for c in seq
            )
            counts[index] = running[-1]
        else:
            assert all("usage" not in c for c in seq)
            counts[index] = len(seq)  # one token per chunk (the real server merges a few, now and then)
        fingerprinted = [c for c in seq if "system_fingerprint" in c]
        if include_usage:
            assert not fingerprinted
        else:
            assert fingerprinted == [seq[-1]], "without usage, the finishing chunk carries the fingerprint"
            assert re.fullmatch(r"vllm-0\.32\.0-[0-9a-f]{8}", seq[-1]["system_fingerprint"])
    if include_usage:
        assert len(usage_chunks) == 1 and chunks[-1] is usage_chunks[0], "usage comes last, once"
        usage = usage_chunks[0]["usage"]
        assert list(usage) == ["prompt_tokens", "total_tokens", "completion_tokens"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        if continuous or one_token_per_chunk:
            assert usage["completion_tokens"] == sum(counts.values())
        else:
            assert usage["completion_tokens"] >= sum(counts.values())
        assert re.fullmatch(r"vllm-0\.32\.0-[0-9a-f]{8}", usage_chunks[0]["system_fingerprint"])
    else:
        assert not usage_chunks
    return chunks


STREAMS = ["20", "21", "22", "23", "24", "25", "28"]


@pytest.mark.parametrize("name", STREAMS)
def test_stream_matches_transcript(problems, name):
    real, sim, model = replay(problems, name)
    request = json.loads(request_body(name))
    assert sim.status == real.status == 200
    for header in ("content-type", "transfer-encoding", "vary"):
        assert sim.headers.get(header) == real.headers.get(header), header
    assert "content-length" not in sim.headers
    real_chunks = check_stream_rules(real.events(), request, False)  # the rules hold for the real server...
    sim_chunks = check_stream_rules(sim.events(), request, True)  # ...and for the simulator
    real_shapes, sim_shapes = chunk_shapes(real.events()), chunk_shapes(sim.events())
    assert set(sim_shapes) == set(real_shapes)
    for kind in real_shapes:
        assert sim_shapes[kind] <= real_shapes[kind], f"{kind} chunks differ in keys, order or types"
    assert {c["model"] for c in sim_chunks} == {model}
    # Our tokenizer counts these prompts as Llama's did.
    prompt_tokens = lambda chunks: [c["usage"]["prompt_tokens"] for c in chunks if "usage" in c]  # noqa: E731
    assert prompt_tokens(sim_chunks)[-1:] == prompt_tokens(real_chunks)[-1:]


def test_choices_interleave_without_lockstep(problems):
    """n > 1 choices take turns like vLLM's child requests: not a fixed rotation from the start."""
    body = orjson.dumps({"prompt": "    return x\n\n", "max_tokens": 24, "n": 4, "stream": True})
    orders = set()
    for _ in range(3):
        (answer,), _ = run(exchange(problems, [("POST", "/v1/completions", body)]))
        orders.add(tuple(json.loads(e)["choices"][0]["index"] for e in answer.events()[:-1]))
    assert any(order[:4] != (0, 1, 2, 3) for order in orders)


@pytest.mark.parametrize("name", ["10", "11", "12", "46", "52", "53"])
def test_completion_body_matches_transcript(problems, name):
    real, sim, model = replay(problems, name)
    request = json.loads(request_body(name))
    assert sim.status == real.status == 200
    assert sim.headers["content-type"] == real.headers["content-type"] == "application/json"
    real_body, sim_body = json.loads(real.body), json.loads(sim.body)
    assert orjson.dumps(sim_body) == sim.body, "compact, in order"
    for choice in real_body["choices"] + sim_body["choices"]:
        choice["stop_reason"] = choice["stop_reason"] or "x"
    assert shape(sim_body) == shape(real_body)
    assert sim_body["model"] == model and re.fullmatch(r"cmpl-[0-9a-f]{16}", sim_body["id"])
    assert [c["index"] for c in sim_body["choices"]] == list(range(request.get("n", 1)))
    usage, real_usage = sim_body["usage"], real_body["usage"]
    assert usage["prompt_tokens"] == real_usage["prompt_tokens"]
    max_tokens = min(request.get("max_tokens", 16), MAX_MODEL_LEN - usage["prompt_tokens"])
    for choice in sim_body["choices"]:
        if choice["finish_reason"] == "length":
            assert choice["stop_reason"] == "x"  # (null, see above)
    if all(c["finish_reason"] == "length" for c in sim_body["choices"]):
        assert usage["completion_tokens"] == max_tokens * len(sim_body["choices"])
    if name == "46":  # prompt + max_tokens > max_model_len: capped, not an error
        assert usage["completion_tokens"] == real_usage["completion_tokens"] == MAX_MODEL_LEN - 451


ERRORS = ["40", "41", "42", "43", "44", "45", "47", "48", "49", "50", "51", "57", "58"]


@pytest.mark.parametrize("name", ERRORS)
def test_error_matches_transcript_exactly(problems, name):
    real, sim, model = replay(problems, name)
    assert sim.status == real.status
    assert sim.headers["content-type"] == real.headers["content-type"] == "application/json"
    assert sim.body == expected(real.body, model)


@pytest.mark.parametrize("name", ["55", "56"])
def test_in_band_stream_error_matches_transcript_exactly(problems, name):
    real, sim, model = replay(problems, name)
    assert sim.status == real.status == 200
    assert sim.headers["content-type"] == real.headers["content-type"]
    assert sim.body == real.body


def test_other_routes_match_transcripts(problems):
    answers, model = run(
        exchange(
            problems,
            [
                ("GET", "/health", None),
                ("GET", "/v1/models", None),
                ("GET", "/version", None),
                ("GET", "/v1/nope", None),
            ],
        )
    )
    health, models, version, unknown = answers
    real = transcript("01")
    assert health.status == real.status == 200 and health.body == real.body == b""
    assert health.headers["content-length"] == real.headers["content-length"] == "0"
    real = transcript("02")
    assert shape(json.loads(models.body)) == shape(json.loads(real.body))
    entry = json.loads(models.body)["data"][0]
    assert (entry["id"], entry["owned_by"], entry["max_model_len"]) == (model, "vllm", MAX_MODEL_LEN)
    assert entry["root"].startswith("simulated://")
    real = transcript("03")
    assert (version.status, version.body) == (real.status, real.body)
    real = transcript("54")
    assert (unknown.status, unknown.body, unknown.headers["content-type"]) == (
        404,
        real.body,
        "application/json",
    )


def test_raw_http_chunk_framing(problems):
    """Over a raw socket: each SSE event in its own HTTP/1.1 chunk, then the zero chunk."""
    real = TRANSCRIPTS.joinpath("29_stream_n2_raw_http_chunks.txt").read_bytes()
    body = request_body("29").replace(REAL_MODEL.encode(), b"simulated-llama-8b")

    async def fetch() -> bytes:
        async with SimulatedFleet(
            1, problems=problems, max_model_len=MAX_MODEL_LEN, min_step_s=0.002
        ) as fleet:
            reader, writer = await asyncio.open_connection("127.0.0.1", fleet.servers[0].port)
            writer.write(
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
            )
            data = b""
            while not data.endswith(b"\r\n0\r\n\r\n"):
                data += await reader.read(65536)
            await asyncio.sleep(0.05)  # nothing may follow the terminator
            extra = b""
            try:
                extra = await asyncio.wait_for(reader.read(65536), 0.2)
            except TimeoutError:
                pass
            writer.close()
            return data + extra

    for raw in (real, run(fetch())):
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower() and b"content-length" not in head.lower()
        events = []
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            assert re.fullmatch(rb"[0-9a-f]+", size_line), size_line
            size = int(size_line, 16)
            chunk, rest = rest[:size], rest[size:]
            assert rest.startswith(b"\r\n")
            rest = rest[2:]
            if size == 0:
                break
            assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n") and chunk.count(b"\n\n") == 1
            events.append(chunk)
        assert rest == b"", "nothing after the zero chunk"
        assert events[-1] == b"data: [DONE]\n\n"


def test_encoded_chunks_equal_the_transcripts_byte_for_byte():
    """The pure encoders, given the real server's values, reproduce its bytes exactly."""
    from vllm_sim.api.wire import Choice, ChunkEncoder, completion_body, usage_field

    fingerprint = "vllm-0.32.0-5be7a34d"

    def lines(name: str) -> list[bytes]:
        return [b"data: " + e + b"\n\n" for e in transcript(name).events()]

    def encoder_for(line: bytes) -> ChunkEncoder:
        chunk = json.loads(line[len(b"data: ") :])
        return ChunkEncoder(chunk["id"], chunk["created"], chunk["model"], fingerprint)

    plain = lines("22")
    enc = encoder_for(plain[0])
    assert enc.token_event(enc.prefix(0), orjson.dumps("#")) == plain[0]
    assert enc.finish_event(enc.prefix(0), orjson.dumps("HAVE"), "length", None, b"", True) == plain[-2]
    assert plain[-1] == b"data: [DONE]\n\n"

    continuous = lines("20")
    enc = encoder_for(continuous[0])
    assert enc.token_event(enc.prefix(1), orjson.dumps("\n"), usage_field(4, 2)) == continuous[3]
    stop_chunk = enc.finish_event(
        enc.prefix(3), orjson.dumps(" )"), "stop", "\ndef", usage_field(4, 7), False
    )
    assert stop_chunk == continuous[29]
    assert enc.usage_event(4, 199) == continuous[-2]

    real = json.loads(transcript("10").body)
    (choice,) = real["choices"]
    body = completion_body(
        real["id"],
        real["created"],
        real["model"],
        fingerprint,
        [Choice(0, choice["text"], "length", None)],
        3,
        16,
    )
    assert body == transcript("10").body


# -- /v1/chat/completions ------------------------------------------------------------------------


def chat_name(path) -> str:
    return path.name.split("_", 1)[0]


def chat_captures(kind: str) -> list[str]:
    """Numbers of the chat-dir captures of one kind: "stream", "body" (200 JSON), "error"."""
    names = []
    for path in sorted(CHAT_TRANSCRIPTS.glob("*.txt")):
        http = parse_dump(path.read_bytes())
        found = (
            "stream"
            if http.headers["content-type"].startswith("text/event-stream")
            else "body"
            if http.status == 200
            else "error"
        )
        if found == kind:
            names.append(chat_name(path))
    return names


def endpoint(name: str, directory=CHAT_TRANSCRIPTS) -> str:
    (path,) = directory.glob(f"{name}_*.txt")
    return "/v1/completions" if "_completions_" in path.name else "/v1/chat/completions"


def chat_chunk_kind(chunk: dict) -> str:
    if not chunk["choices"]:
        return "usage"
    choice = chunk["choices"][0]
    if "role" in choice["delta"]:
        return "role"
    return "finish" if choice["finish_reason"] else "running"


def chat_chunk_shapes(events: list[bytes]) -> dict[str, set]:
    shapes = defaultdict(set)
    for raw in events[:-1]:
        chunk = json.loads(raw)
        for choice in chunk["choices"]:  # null or a string: not a difference of shape
            if "stop_reason" in choice:
                choice["stop_reason"] = choice["stop_reason"] or "x"
        shapes[chat_chunk_kind(chunk)].add(repr(shape(chunk)))
    return shapes


def check_chat_stream_rules(events: list[bytes], request: dict, one_token_per_chunk: bool) -> list[dict]:
    """The rules every vLLM chat stream follows; returns the parsed chunks."""
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for raw, chunk in zip(events, chunks):
        assert orjson.dumps(chunk) == raw, "not compact JSON in vLLM's key order"
        assert chunk["object"] == "chat.completion.chunk"
        assert re.fullmatch(r"chatcmpl-[0-9a-f]{16}", chunk["id"])
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    n = request.get("n", 1)
    stops = request.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    options = request.get("stream_options") or {}
    include_usage = bool(options.get("include_usage"))
    continuous = include_usage and bool(options.get("continuous_usage_stats"))

    # every choice's role chunk first, in index order, and only they carry prompt_token_ids/prompt_text
    roles, rest = chunks[:n], [c for c in chunks[n:] if c["choices"]]
    for i, chunk in enumerate(roles):
        assert chunk["choices"] == [
            {
                "index": i,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ]
        assert (chunk["prompt_token_ids"], chunk["prompt_text"]) == (None, None)
        if continuous:
            usage = chunk["usage"]
            assert (usage["completion_tokens"], usage["completion_tokens_details"]) == (0, None)
            assert usage["total_tokens"] == usage["prompt_tokens"]
        else:
            assert "usage" not in chunk
    per_choice: dict[int, list[dict]] = defaultdict(list)
    for chunk in rest:
        assert len(chunk["choices"]) == 1, "one choice per chunk"
        assert "prompt_token_ids" not in chunk and "prompt_text" not in chunk
        choice = chunk["choices"][0]
        assert list(choice["delta"]) == ["content"]
        per_choice[choice["index"]].append(chunk)
    assert sorted(per_choice) == list(range(n))
    counts = {}
    for index, seq in per_choice.items():
        finishes = [c for c in seq if c["choices"][0]["finish_reason"] is not None]
        assert finishes == [seq[-1]], f"choice {index}: finish_reason must come once, in its last chunk"
        last = seq[-1]["choices"][0]
        assert all("stop_reason" not in c["choices"][0] for c in seq[:-1]), "stop_reason only when finishing"
        if last["finish_reason"] == "stop":
            assert (
                last["stop_reason"] in stops or last["stop_reason"] is None
            )  # a stop string, or end of sequence
        else:
            assert last["finish_reason"] == "length" and last["stop_reason"] is None
        if continuous:
            running = [c["usage"]["completion_tokens"] for c in seq]
            assert running == sorted(running) and len(set(running)) == len(running)
            assert all(
                list(c["usage"])
                == ["prompt_tokens", "total_tokens", "completion_tokens", "completion_tokens_details"]
                for c in seq
            )
            counts[index] = running[-1]
        else:
            assert all("usage" not in c for c in seq)
            counts[index] = len(seq)
        fingerprinted = [c for c in seq if "system_fingerprint" in c]
        if include_usage:
            assert not fingerprinted
        else:
            assert fingerprinted == [seq[-1]], "without usage, the finishing chunk carries the fingerprint"
    usage_chunks = [c for c in chunks if not c["choices"]]
    if include_usage:
        assert len(usage_chunks) == 1 and chunks[-1] is usage_chunks[0], "usage comes last, once"
        usage = usage_chunks[0]["usage"]
        assert list(usage) == ["prompt_tokens", "total_tokens", "completion_tokens"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        if continuous or one_token_per_chunk:
            assert usage["completion_tokens"] == sum(counts.values())
        else:
            assert usage["completion_tokens"] >= sum(counts.values())
        assert re.fullmatch(r"vllm-0\.32\.0-[0-9a-f]{8}", usage_chunks[0]["system_fingerprint"])
    else:
        assert not usage_chunks
    return chunks


def compare_chat_streams(real: Http, sim: Http, request: dict) -> tuple[list[dict], list[dict]]:
    assert sim.status == real.status == 200
    for header in ("content-type", "transfer-encoding", "vary"):
        assert sim.headers.get(header) == real.headers.get(header), header
    real_chunks = check_chat_stream_rules(real.events(), request, False)
    sim_chunks = check_chat_stream_rules(sim.events(), request, True)
    real_shapes, sim_shapes = chat_chunk_shapes(real.events()), chat_chunk_shapes(sim.events())
    assert set(sim_shapes) <= set(real_shapes)
    for kind in sim_shapes:
        assert sim_shapes[kind] <= real_shapes[kind], f"{kind} chunks differ in keys, order or types"
    return real_chunks, sim_chunks


def test_chat_stream_matches_transcript_31(problems):
    real, sim, model = replay(problems, "31", "/v1/chat/completions")
    request = json.loads(request_body("31"))
    real_chunks, sim_chunks = compare_chat_streams(real, sim, request)
    assert set(chat_chunk_shapes(sim.events())) == set(chat_chunk_shapes(real.events()))
    assert {c["model"] for c in sim_chunks} == {model}
    # The same chat template token count as the real server's ("hi" alone: 11 tokens), and the same usage.
    assert [c.get("usage") for c in sim_chunks[:2]] == [c.get("usage") for c in real_chunks[:2]]
    assert sim_chunks[-1]["usage"] == real_chunks[-1]["usage"]


@pytest.mark.parametrize("name", chat_captures("stream"))
def test_chat_stream_matches_capture(problems, name):
    real, sim, model = replay(problems, name, "/v1/chat/completions", CHAT_TRANSCRIPTS)
    request = json.loads(request_body(name, CHAT_TRANSCRIPTS))
    compare_chat_streams(real, sim, request)


def test_chat_stream_ends_by_end_of_sequence_as_vllm_does(problems):
    """Capture 39 forced vLLM's EOS token: a last chunk with empty content, "stop", no stop_reason,
    and the EOS counted in the usage. The synthetic model's answers end the same way."""
    real = check_chat_stream_rules(
        transcript("39", CHAT_TRANSCRIPTS).events(), json.loads(request_body("39", CHAT_TRANSCRIPTS)), False
    )
    request = {
        "messages": [{"role": "user", "content": "hi"}],
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    (answer,), _ = run(exchange(problems, [("POST", "/v1/chat/completions", orjson.dumps(request))]))
    sim = check_chat_stream_rules(answer.events(), request, True)
    for chunks in (real, sim):
        last = chunks[-2]
        assert last["choices"][0]["delta"] == {"content": ""}
        assert (last["choices"][0]["finish_reason"], last["choices"][0]["stop_reason"]) == ("stop", None)
        assert chunks[-1]["usage"]["completion_tokens"] == last["usage"]["completion_tokens"]
    assert repr(shape(sim[-2])) == repr(shape(real[-2]))


def compare_chat_bodies(real: Http, sim: Http, request: dict, model: str) -> tuple[dict, dict]:
    assert sim.status == real.status == 200
    assert sim.headers["content-type"] == real.headers["content-type"] == "application/json"
    real_body, sim_body = json.loads(real.body), json.loads(sim.body)
    assert orjson.dumps(sim_body) == sim.body, "compact, in order"
    for choice in real_body["choices"] + sim_body["choices"]:
        choice["stop_reason"] = choice["stop_reason"] or "x"
    assert shape(sim_body) == shape(real_body)
    assert sim_body["object"] == "chat.completion" and sim_body["model"] == model
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{16}", sim_body["id"])
    n = request.get("n", 1)
    assert [c["index"] for c in sim_body["choices"]] == list(range(n if isinstance(n, int) else 1))
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    if limit is not None and all(c["finish_reason"] == "length" for c in sim_body["choices"]):
        assert sim_body["usage"]["completion_tokens"] == int(limit) * len(sim_body["choices"])
    return real_body, sim_body


def test_chat_body_matches_transcript_30(problems):
    real, sim, model = replay(problems, "30", "/v1/chat/completions")
    real_body, sim_body = compare_chat_bodies(real, sim, json.loads(request_body("30")), model)
    assert sim_body["usage"] == real_body["usage"]  # 11 prompt tokens, 8 generated


@pytest.mark.parametrize("name", chat_captures("body"))
def test_chat_body_matches_capture(problems, name):
    path = endpoint(name)
    real, sim, model = replay(problems, name, path, CHAT_TRANSCRIPTS)
    if path == "/v1/completions":
        assert sim.status == real.status == 200 and shape(json.loads(sim.body)) == shape(
            json.loads(real.body)
        )
        return
    compare_chat_bodies(real, sim, json.loads(request_body(name, CHAT_TRANSCRIPTS)), model)


@pytest.mark.parametrize("name", chat_captures("error"))
def test_chat_and_validation_errors_match_captures_exactly(problems, name):
    real, sim, model = replay(problems, name, endpoint(name), CHAT_TRANSCRIPTS)
    assert sim.status == real.status
    assert sim.headers["content-type"] == real.headers["content-type"] == "application/json"
    assert sim.body == expected(real.body, model)


def test_chat_encoders_equal_the_transcripts_byte_for_byte():
    from vllm_sim.api.wire import ChatChunkEncoder, Choice, chat_completion_body

    fingerprint = "vllm-0.32.0-5be7a34d"
    lines = [b"data: " + e + b"\n\n" for e in transcript("31").events()]
    first = json.loads(lines[0][len(b"data: ") :])
    enc = ChatChunkEncoder(first["id"], first["created"], first["model"], fingerprint)
    assert enc.role_event(0, enc.step_usage(11, 0)) == lines[0]
    assert enc.role_event(1, enc.step_usage(11, 0)) == lines[1]
    assert enc.token_event(enc.prefix(0), orjson.dumps("\n"), enc.step_usage(11, 1)) == lines[2]
    assert enc.token_event(enc.prefix(1), orjson.dumps("all"), enc.step_usage(11, 2)) == lines[5]
    assert (
        enc.finish_event(enc.prefix(0), orjson.dumps(" #"), "length", None, enc.step_usage(11, 4), False)
        == lines[8]
    )
    assert enc.usage_event(11, 8) == lines[-2]
    no_usage = [b"data: " + e + b"\n\n" for e in transcript("32", CHAT_TRANSCRIPTS).events()]
    first = json.loads(no_usage[0][len(b"data: ") :])
    enc = ChatChunkEncoder(first["id"], first["created"], first["model"], "vllm-0.32.0-bb7a8cf7")
    assert enc.role_event(0) == no_usage[0]
    assert enc.finish_event(enc.prefix(0), orjson.dumps('",'), "length", None, b"", True) == no_usage[5]
    eos = [b"data: " + e + b"\n\n" for e in transcript("39", CHAT_TRANSCRIPTS).events()]
    first = json.loads(eos[0][len(b"data: ") :])
    enc = ChatChunkEncoder(first["id"], first["created"], first["model"], "vllm-0.32.0-bb7a8cf7")
    assert enc.finish_event(enc.prefix(0), b'""', "stop", None, enc.step_usage(29, 4), False) == eos[-3]

    real = json.loads(transcript("30").body)
    (choice,) = real["choices"]
    body = chat_completion_body(
        real["id"],
        real["created"],
        real["model"],
        fingerprint,
        [Choice(0, choice["message"]["content"], "length", None)],
        11,
        8,
    )
    assert body == transcript("30").body
