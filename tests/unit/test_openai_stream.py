"""Assembling real vLLM streams into finished choices."""

import orjson
import pytest
import transcripts
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import HTTPStatusError, ProtocolError
from engine.wire.openai import StreamAssembler
from engine.wire.sse import SSEParser
from engine.wire.vllm_fast import VllmFastPath

COMPLETION_STREAMS = [name for name in transcripts.streams() if not name.startswith(("31_", "55_", "56_"))]


def payloads(name: str) -> list[bytes]:
    parser = SSEParser()
    return parser.feed(transcripts.load(name).body) + parser.close()


def expected_choices(name: str, key=lambda c: c["text"]) -> dict[int, tuple[str, str, int]]:
    """Per index: (text, finish_reason, chunks), read straight from the JSON."""
    texts, finish, chunks = {}, {}, {}
    for payload in payloads(name)[:-1]:
        for choice in orjson.loads(payload)["choices"]:
            i = choice["index"]
            texts[i] = texts.get(i, "") + (key(choice) or "")
            chunks[i] = chunks.get(i, 0) + 1
            if choice["finish_reason"] is not None:
                finish[i] = choice["finish_reason"]
    return {i: (texts[i], finish[i], chunks[i]) for i in texts}


@pytest.mark.parametrize("name", COMPLETION_STREAMS)
def test_every_choice_finishes_once_with_its_whole_text(name):
    request = transcripts.load(name).request_json()
    prompts = (
        request["prompt"]
        if isinstance(request["prompt"], list) and isinstance(request["prompt"][0], str)
        else [0]
    )
    n = request.get("n", 1) * len(prompts)
    assembler = StreamAssembler(n)
    finished = {}
    for payload in payloads(name):
        for choice in assembler.feed(payload):
            assert choice.index not in finished
            finished[choice.index] = (choice.text, choice.finish_reason, choice.tokens)
    assert assembler.done and assembler.unfinished() == []
    assert finished == expected_choices(name)
    usage = assembler.usage
    if request.get("stream_options", {}).get("include_usage"):
        # chunk counting is exact whenever vLLM sent one token per chunk
        assert usage["completion_tokens"] >= sum(t for _, _, t in finished.values())
    else:
        assert usage is None


def test_chat_stream_reads_delta_content_and_counts_no_token_for_the_role_chunk():
    assembler = StreamAssembler(2, chat=True)
    finished = {}
    for payload in payloads("31_chat_stream_n2_usage"):
        for choice in assembler.feed(payload):
            finished[choice.index] = choice
    expected = expected_choices("31_chat_stream_n2_usage", key=lambda c: c["delta"].get("content"))
    assert {i: c.text for i, c in finished.items()} == {i: text for i, (text, _, _) in expected.items()}
    assert (
        sum(c.tokens for c in finished.values()) == assembler.usage["completion_tokens"] == assembler.chunks
    )


@pytest.mark.parametrize(
    "name", ["55_err_stream_inband_logprobs_too_many", "56_err_stream_inband_token_out_of_vocab"]
)
def test_inband_error_event_is_a_non_retryable_400(name):
    assembler = StreamAssembler(1)
    with pytest.raises(HTTPStatusError) as info:
        for payload in payloads(name):
            list(assembler.feed(payload))
    assert info.value.status == 400 and not info.value.retryable


def test_done_before_every_choice_finished_is_a_protocol_error():
    stream = payloads("24_stream_n4_include_usage_only")
    assembler = StreamAssembler(4)
    for payload in stream[:3]:
        list(assembler.feed(payload))
    with pytest.raises(ProtocolError):
        list(assembler.feed(b"[DONE]"))
    assert assembler.unfinished() == [0, 1, 2, 3]


def test_choice_after_its_finish_and_index_out_of_range_are_protocol_errors():
    chunk = b'{"choices":[{"index":0,"text":"x","finish_reason":"stop"}]}'
    assembler = StreamAssembler(1)
    assert len(list(assembler.feed(chunk))) == 1
    with pytest.raises(ProtocolError):
        list(assembler.feed(chunk))
    with pytest.raises(ProtocolError):
        list(StreamAssembler(1).feed(b'{"choices":[{"index":3,"text":"x","finish_reason":null}]}'))


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'{"id": 1}', b'{"choices":[{"text":"x"}]}'])
def test_malformed_chunks_are_protocol_errors(payload):
    with pytest.raises(ProtocolError):
        list(StreamAssembler(1).feed(payload))


def test_stop_strings_the_server_did_not_apply_are_applied_as_vllm_would():
    assembler = StreamAssembler(2, stop=("\ndef", "\n#"))
    assert (
        list(assembler.feed(b'{"choices":[{"index":0,"text":"    return 1\\n# done","finish_reason":null}]}'))
        == []
    )
    (first,) = list(
        assembler.feed(b'{"choices":[{"index":0,"text":"\\nprint(1)","finish_reason":"length"}]}')
    )
    assert (first.text, first.finish_reason, first.tokens) == ("    return 1", "stop", 2)
    (second,) = list(
        assembler.feed(b'{"choices":[{"index":1,"text":"    return 2","finish_reason":"length"}]}')
    )
    assert (second.text, second.finish_reason) == ("    return 2", "length")


def _running(index: int, text: bytes) -> bytes:
    """A running chunk in vLLM 0.32's exact layout (what VllmFastPath takes by its bytes)."""
    return (
        b'{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":%d,"text":"%s",'
        b'"logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]}'
        % (index, text)
    )


def _fed(fast: VllmFastPath, payload: bytes) -> list:
    return list(fast.feed_events((payload,)))


def test_fast_path_texts_are_decoded_as_json_strings_whatever_their_escapes():
    pieces = [b"a\\\\", b'\\"q\\"', b"\\n\\t", b"\\u00e9\\ud83d", b"\\ude00 caf\xc3\xa9", b"\\\\"]
    fast = VllmFastPath(StreamAssembler(2))
    for piece in pieces:
        assert _fed(fast, _running(1, piece)) == []
    assert fast.assembler.chunks == len(pieces) and fast.assembler.unfinished() == [0, 1]
    (done,) = _fed(fast, b'{"choices":[{"index":1,"text":"!","finish_reason":"length"}]}')
    expected = orjson.loads(b'"' + b"".join(pieces) + b'!"')
    assert done.text == expected == 'a\\"q"\n\té\U0001f600 café\\!' and done.tokens == len(pieces) + 1


def test_fast_path_leaves_errors_to_the_full_parse():
    fast = VllmFastPath(StreamAssembler(1))
    with pytest.raises(ProtocolError):
        _fed(fast, _running(1, b"x"))  # index out of range
    _fed(fast, _running(0, b"bad \\x escape"))
    with pytest.raises(ProtocolError):
        _fed(fast, b'{"choices":[{"index":0,"text":"","finish_reason":"stop"}]}')
    fast = VllmFastPath(StreamAssembler(1))
    _fed(fast, b'{"choices":[{"index":0,"text":"","finish_reason":"stop"}]}')
    with pytest.raises(ProtocolError):
        _fed(fast, _running(0, b"after the finish"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 3))
def test_arbitrary_payloads_parse_or_raise_one_protocol_error(payload, n):
    assembler = StreamAssembler(n or 1)
    try:
        list(assembler.feed(payload))
        list(assembler.feed(_running(0, payload.replace(b"\\", b"").replace(b'"', b""))))
        list(assembler.feed(b'{"choices":[{"index":0,"text":"","finish_reason":"stop"}]}'))
    except (ProtocolError, HTTPStatusError):
        pass


def _vllm_chunks(name: str) -> list[bytes]:
    """A transcript's events as vLLM sends them: each SSE event its own HTTP chunk."""
    return [b"%x\r\n%s\r\n" % (len(e), e) for e in (b"data: " + p + b"\n\n" for p in payloads(name))]


@pytest.mark.parametrize(
    "name",
    [
        "20_stream_n4_stop_usage_continuous",
        "24_stream_n4_include_usage_only",
        "29_stream_n2_raw_http_chunks",
        "23_stream_n1_include_usage",
    ],
)
def test_http_chunk_fast_path_takes_exactly_what_the_layered_path_takes(name):
    if name.startswith("29_"):  # the raw capture: vLLM's own chunk framing, byte for byte
        body = transcripts.load(name).body
        chunks, pos = [], 0
        while not body.startswith(b"0\r\n", pos):
            size_end = body.index(b"\r\n", pos)
            end = size_end + 2 + int(body[pos:size_end], 16) + 2
            chunks.append(body[pos:end])
            pos = end
    else:
        chunks = _vllm_chunks(name)
    events = [c[c.index(b"\r\n") + 2 : -2] for c in chunks]
    n = (
        max(c["index"] for e in events if e != b"data: [DONE]\n\n" for c in orjson.loads(e[6:])["choices"])
        + 1
    )
    layered, fast = StreamAssembler(n, clock=lambda: 0.0), VllmFastPath(StreamAssembler(n, clock=lambda: 0.0))
    expected, got, taken = [], [], 0
    for chunk in chunks:
        event = chunk[chunk.index(b"\r\n") + 2 : -2]
        expected += layered.feed_all(SSEParser().feed(event))
        if not fast.take_chunks(chunk):
            taken += 1
        else:
            got += fast.feed_events(SSEParser().feed(event))
    done = fast.assembler
    assert got == expected and done.chunks == layered.chunks and done.usage == layered.usage
    if not name.startswith("20_"):  # continuous usage stats: a layout the fast path leaves alone
        assert taken > 0
    # a block of several whole chunks at once, and blocks that must be refused untouched
    block = b"".join(chunks[1:4])
    again = VllmFastPath(StreamAssembler(n))
    list(again.feed_events(SSEParser().feed(chunks[0][chunks[0].index(b"\r\n") + 2 : -2])))
    before = (again.assembler.chunks, again.assembler.unfinished())
    for bad in (
        b"x" + block,
        block.replace(b"\r\ndata", b";e\r\ndata", 1),
        block.replace(b'"index":', b'"index":9'),
    ):
        assert again.take_chunks(bad) == bad
        assert (again.assembler.chunks, again.assembler.unfinished()) == before
    if taken:  # a partial chunk at the end waits for the next read
        assert again.take_chunks(block[:-1]) == b"" and again.take_chunks(block[-1:]) == b""
        assert again.assembler.chunks == before[0] + 3
