"""Fault injection in the simulator (`engine simulate --faults`): the spec parser, deterministic
draws, and every fault kind as a raw client on 127.0.0.1 sees it, with its exact count.

Durations are short (0.2-1.5 s) and timings are checked only as loose lower bounds."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import subprocess
import sys
import time

import aiohttp
import pytest
import uvloop

from engine.errors import InputError
from vllm_sim import SimulatedFleet
from vllm_sim.faults.spec import KINDS, FaultPlan, FaultSpecError, parse_faults

SIMULATE = [sys.executable, "-m", "vllm_sim"]
BODY = dict(prompt="import os\n", max_tokens=40)  # a generic prompt: 40 tokens, 40 events


def run(coro, timeout: float = 30):
    return uvloop.run(asyncio.wait_for(coro, timeout))


def fleet(spec: str, servers: int = 1, seed: int = 0, **settings) -> SimulatedFleet:
    settings.setdefault("tokens_per_second", 20000)
    settings.setdefault("min_step_s", 0.002)
    return SimulatedFleet(servers, faults=spec, faults_seed=seed, **settings)


async def post(session: aiohttp.ClientSession, url: str, **body) -> aiohttp.ClientResponse:
    return await session.post(url + "/v1/completions", json={**BODY, **body})


async def read_events(resp: aiohttp.ClientResponse) -> list[bytes]:
    """Every SSE event's payload (after `data: `) until the body ends cleanly."""
    raw = await resp.read()
    assert raw.endswith(b"\n\n") or not raw, raw[-100:]
    return [e[len(b"data: ") :] for e in raw.split(b"\n\n") if e]


async def next_event(resp: aiohttp.ClientResponse) -> bytes:
    event = await resp.content.readuntil(b"\n\n")
    assert event.startswith(b"data: ") and event.endswith(b"\n\n"), event
    return event[len(b"data: ") : -2]


async def metric_counts(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    return {
        m[0]: float(m[1])
        for m in re.findall(r'^sim_faults_injected_total\{kind="(\w+)"\} (\S+)$', text, re.M)
    }


def only(counts: dict[str, int | float], **expected: int) -> bool:
    return all(counts[k] == expected.get(k, 0) for k in KINDS)


async def state(session: aiohttp.ClientSession, url: str) -> str:
    """ "up" (/health answers), "refused" (nothing listens), or "other" (e.g. cut while stopping)."""
    try:
        async with session.get(url + "/health") as r:
            await r.read()
            return "up"
    except aiohttp.ClientConnectorError:
        return "refused"
    except aiohttp.ClientConnectionError:
        return "other"


async def refused(session: aiohttp.ClientSession, url: str) -> bool:
    return await state(session, url) == "refused"


async def up(session: aiohttp.ClientSession, url: str) -> bool:
    return await state(session, url) == "up"


async def until(predicate, timeout: float = 10.0, every: float = 0.02) -> float:
    """Poll an async predicate; return how long it took to hold."""
    t0 = time.monotonic()
    while not await predicate():
        assert time.monotonic() - t0 < timeout, "condition never held"
        await asyncio.sleep(every)
    return time.monotonic() - t0


# -- the spec ----------------------------------------------------------------------------------


def test_parser_accepts_the_documented_forms():
    spec = parse_faults("reset=0.05,http503=0.02,stall=0.01:30s,kill=server2@10s+5s,fleet_down=@20s+15s")
    assert [(f.kind, f.rate) for f in spec.rates] == [("http503", 0.02), ("stall", 0.01), ("reset", 0.05)]
    assert spec.rates[1].seconds == 30.0 and spec.rates[1].variant == "continue"
    kill, down = spec.events
    assert (kill.kind, kill.target, kill.at, kill.duration) == ("kill", 2, 10.0, 5.0)
    assert (down.kind, down.target, down.at, down.duration) == ("fleet_down", None, 20.0, 15.0)

    spec = parse_faults(
        " http429 = 5% : retry=3s , http500=1%:body=plain, malformed=0.1:truncated:after=2-9,"
        "stall=0.1:250ms:after=4:close, cut=0.1:close, inband=0.1:after=0, slow_first=0.1:0.5s,"
        "kill=0.01:2m, degrade=server0@1.5s:errors, kill=server0@0s"
    )
    rates = {f.kind: f for f in spec.rates}
    assert rates["http429"].rate == pytest.approx(0.05) and rates["http429"].retry_after == 3
    assert rates["http500"].variant == "plain"
    assert rates["malformed"].after == (2, 9) and rates["malformed"].variant == "truncated"
    assert (
        rates["stall"].seconds == 0.25
        and rates["stall"].after == (4, 4)
        and rates["stall"].variant == "close"
    )
    assert rates["cut"].variant == "close" and rates["inband"].after == (0, 0)
    assert rates["slow_first"].seconds == 0.5 and rates["kill"].seconds == 120.0
    assert [(e.kind, e.at, e.duration, e.errors) for e in spec.events] == [
        ("kill", 0.0, None, False),
        ("degrade", 1.5, None, True),
    ]
    assert parse_faults(str(spec)) == spec  # the canonical form (logged at start) parses back
    assert parse_faults("http429=0.1").rates[0].retry_after == 1  # 429 always carries Retry-After
    for off in (None, "", "none", " off "):
        assert not parse_faults(off) and str(parse_faults(off)) == "none"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus=0.1", "unknown kind 'bogus'"),
        ("reset", "expected KIND=RATE"),
        ("reset=", "expected KIND=RATE"),
        ("reset=0.1,", "empty item"),
        ("reset=lots", "is not a rate"),
        ("reset=1.5", "between 0 and 1"),
        ("reset=-0.1", "between 0 and 1"),
        ("reset=0.6,http503=0.5", "add up to 1.1"),
        ("reset=0.1,reset=0.2", "given a rate twice"),
        ("stall=0.1", "needs a duration"),
        ("stall=0.1:30", "use a number with a unit"),
        ("slow_first=0.1:0s", "must be positive"),
        ("stall=0.1:1s:close:close", "conflicts"),
        ("malformed=0.1:truncated:garbage", "conflicts"),
        ("reset=0.1:close", "takes no option 'close'"),
        ("reset=0.1:after=x", "count of events"),
        ("reset=0.1:after=9-3", "empty range"),
        ("stall=0.1:1s:close=yes", "flag"),
        ("http429=0.1:retry=1.5s", "whole seconds"),
        ("http500=0.1:body=html", "body must be one of"),
        ("fleet_down=0.1", "scheduled only"),
        ("degrade=0.1", "scheduled only"),
        ("http503=server0@1s", "per-request rate"),
        ("kill=@1s", "needs a target"),
        ("kill=node1@1s", "needs a target"),
        ("fleet_down=server0@1s", "takes every server"),
        ("kill=server0@10", "bad start time '10'"),
        ("kill=server0@1s+0s", "must be positive"),
        ("kill=server0@1s:errors", "takes no option"),
    ],
)
def test_parser_rejects_bad_specs_in_one_line(spec, message):
    with pytest.raises(FaultSpecError, match=re.escape(message)) as info:
        parse_faults(spec)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)


def test_a_target_outside_the_fleet_is_refused():
    with pytest.raises(FaultSpecError, match="no server2 in a fleet of 2"):
        SimulatedFleet(2, faults="kill=server2@1s")
    SimulatedFleet(3, faults="kill=server2@1s")


# -- deterministic draws (pure) ----------------------------------------------------------------


def test_draws_are_a_function_of_seed_server_and_request_number():
    spec = parse_faults("reset=0.05,http503=0.02,stall=0.01:30s,malformed=0.02:after=1-50")
    draws = [spec.draw(7, 1, k, True) for k in range(4000)]
    assert draws == [spec.draw(7, 1, k, True) for k in range(4000)]
    assert draws != [spec.draw(8, 1, k, True) for k in range(4000)]
    assert draws != [spec.draw(7, 2, k, True) for k in range(4000)]
    # the order in which the spec lists the kinds does not matter
    same = parse_faults("malformed=0.02:after=1-50,stall=0.01:30s,http503=0.02,reset=0.05")
    assert draws == [same.draw(7, 1, k, True) for k in range(4000)]
    kinds = [d.kind for d in draws if d is not None]
    assert 0.03 * 4000 < kinds.count("reset") < 0.07 * 4000  # about the rate (binomial, +-5 sigma)
    assert 0.0 * 4000 < kinds.count("stall") < 0.025 * 4000
    assert all(1 <= d.after <= 50 for d in draws if d is not None and d.kind == "malformed")
    assert len({d.noise for d in draws if d is not None and d.kind == "malformed"}) > 1


def test_stream_faults_skip_non_streaming_requests():
    spec = parse_faults("reset=0.5,http429=0.5")
    for k in range(200):
        streaming, plain = spec.draw(0, 0, k, True), spec.draw(0, 0, k, False)
        assert streaming is not None
        assert plain == (streaming if streaming.kind == "http429" else None)
    assert parse_faults("http500=1").draw(0, 0, 0, False) == FaultPlan("http500", variant="empty")


# -- no faults configured ----------------------------------------------------------------------


def test_without_faults_nothing_is_wired_in():
    async def main():
        async with SimulatedFleet(1, tokens_per_second=20000) as plain, aiohttp.ClientSession() as s:
            assert plain.faults is None and plain.servers[0].api.faults is None
            assert plain.fault_counts() == dict.fromkeys(KINDS, 0)
            assert await metric_counts(s, plain.urls[0]) == {}
            async with await post(s, plain.urls[0], stream=True) as r:
                assert r.status == 200 and (await read_events(r))[-1] == b"[DONE]"

    run(main())


# -- each kind alone, from a raw client --------------------------------------------------------


@pytest.mark.parametrize("variant", ["", ":body=empty", ":body=plain", ":body=json"])
def test_http500_before_streaming(variant):
    async def main():
        async with fleet("http500=1" + variant) as f, aiohttp.ClientSession() as s:
            async with await post(s, f.urls[0], stream=True) as r:
                body = await r.read()
                assert r.status == 500 and "Retry-After" not in r.headers
            if variant == ":body=plain":  # Starlette's ServerErrorMiddleware, as uvicorn serves it
                assert body == b"Internal Server Error"
                assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
            elif variant == ":body=json":
                assert json.loads(body) == {
                    "error": {
                        "message": "simulated fault: internal server error",
                        "type": "InternalServerError",
                        "param": None,
                        "code": 500,
                    }
                }
            else:  # vLLM's handler of engine failures: Response(status_code=500)
                assert body == b""
            assert only(await metric_counts(s, f.urls[0]), http500=1)

    run(main())


def test_http503_with_and_without_retry_after():
    async def main():
        for spec, retry in (("http503=1", None), ("http503=1:retry=7s", "7")):
            async with fleet(spec) as f, aiohttp.ClientSession() as s:
                async with await post(s, f.urls[0], stream=True) as r:
                    error = (await r.json())["error"]
                    assert r.status == 503 and r.headers.get("Retry-After") == retry
                assert list(error) == ["message", "type", "param", "code"]
                assert (error["type"], error["param"], error["code"]) == (
                    "ServiceUnavailableError",
                    None,
                    503,
                )

    run(main())


def test_http429_carries_retry_after():
    async def main():
        async with fleet("http429=1:retry=2s") as f, aiohttp.ClientSession() as s:
            for stream in (True, False):  # a pre-stream fault: streaming or not
                async with await post(s, f.urls[0], stream=stream) as r:
                    assert r.status == 429 and r.headers["Retry-After"] == "2"
                    error = (await r.json())["error"]
                assert (error["type"], error["code"]) == ("RateLimitError", 429)
            assert only(await metric_counts(s, f.urls[0]), http429=2)

    run(main())


def test_slow_first_token():
    async def main():
        async with fleet("slow_first=1:400ms") as f, aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            async with await post(s, f.urls[0], stream=True) as r:
                assert r.status == 200  # the headers come at once
                await next_event(r)
                assert time.monotonic() - t0 >= 0.35
                assert (await read_events(r))[-1] == b"[DONE]"
            assert only(f.fault_counts(), slow_first=1)

    run(main())


def test_stall_sends_nothing_for_the_time_then_goes_on():
    async def main():
        async with fleet("stall=1:400ms:after=3") as f, aiohttp.ClientSession() as s:
            async with await post(s, f.urls[0], stream=True, n=2) as r:
                for _ in range(3):
                    await next_event(r)
                t0 = time.monotonic()
                await next_event(r)
                assert time.monotonic() - t0 >= 0.35
                rest = await read_events(r)
            assert rest[-1] == b"[DONE]"
            assert len(rest) - 1 + 4 == 2 * 40  # nothing lost: n=2 choices of 40 one-token events
            assert only(await metric_counts(s, f.urls[0]), stall=1)

    run(main())


def test_stall_then_close():
    async def main():
        async with fleet("stall=1:300ms:after=2:close") as f, aiohttp.ClientSession() as s:
            async with await post(s, f.urls[0], stream=True) as r:
                await next_event(r)
                await next_event(r)
                t0 = time.monotonic()
                with pytest.raises(aiohttp.ClientPayloadError):
                    await r.read()
                assert time.monotonic() - t0 >= 0.25
            assert only(f.fault_counts(), stall=1)

    run(main())


def test_a_stall_pauses_only_its_own_stream():
    spec = parse_faults("stall=0.5:1500ms:after=1")
    seed = next(
        seed for seed in range(100) if spec.draw(seed, 0, 0, True) and not spec.draw(seed, 0, 1, True)
    )

    async def main():
        async with fleet(str(spec), seed=seed) as f, aiohttp.ClientSession() as s:
            async with await post(s, f.urls[0], stream=True) as stalled:  # request 0 stalls
                await next_event(stalled)
                resumed = asyncio.ensure_future(next_event(stalled))
                async with await post(s, f.urls[0], stream=True) as other:  # request 1 does not
                    assert (await read_events(other))[-1] == b"[DONE]"
                assert not resumed.done()  # the whole of another stream passed during the stall
                await resumed
                assert (await read_events(stalled))[-1] == b"[DONE]"
            assert only(f.fault_counts(), stall=1)

    run(main())


def test_reset_is_a_tcp_rst_mid_stream():
    async def main():
        async with fleet("reset=1:after=3") as f, aiohttp.ClientSession() as s:
            got = []
            with pytest.raises(aiohttp.ClientPayloadError) as info:
                async with await post(s, f.urls[0], stream=True) as r:
                    while True:
                        got.append(await next_event(r))
            assert len(got) == 3 and "ConnectionResetError" in str(info.value)
            # the same, on a bare socket: the kernel reports the RST
            host, port = f.servers[0].host, f.servers[0].port
            reader, writer = await asyncio.open_connection(host, port)
            body = json.dumps({**BODY, "stream": True}).encode()
            writer.write(
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
            )
            with pytest.raises(ConnectionResetError):
                while await reader.read(65536):
                    pass
            writer.close()
            assert only(await metric_counts(s, f.urls[0]), reset=2)

    run(main())


def test_a_fault_beyond_the_end_of_the_stream_happens_before_done():
    async def main():
        async with fleet("reset=1:after=1000") as f, aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.ClientPayloadError):
                async with await post(s, f.urls[0], stream=True, max_tokens=5) as r:
                    await r.read()
            assert only(f.fault_counts(), reset=1)

    run(main())


def test_cut_ends_the_response_cleanly_without_done():
    async def main():
        async with fleet("cut=1:after=4") as f, aiohttp.ClientSession() as s:
            for _ in range(2):  # the connection stays usable: the second request goes on it too
                async with await post(s, f.urls[0], stream=True) as r:
                    events = await read_events(r)
                assert r.status == 200 and len(events) == 4 and b"[DONE]" not in events
                assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events)
            assert only(await metric_counts(s, f.urls[0]), cut=2)

    run(main())


def test_cut_close_drops_the_connection_after_some_events():
    async def main():
        async with fleet("cut=1:after=2:close") as f, aiohttp.ClientSession() as s:
            async with await post(s, f.urls[0], stream=True) as r:
                await next_event(r)
                await next_event(r)
                with pytest.raises(aiohttp.ClientPayloadError) as info:
                    await r.read()
            assert "ConnectionResetError" not in str(info.value)  # a FIN, not a reset
            assert only(f.fault_counts(), cut=1)

    run(main())


def test_malformed_garbage_event():
    async def main():
        async with fleet("malformed=1:after=2") as f, aiohttp.ClientSession() as s:
            async with await post(s, f.urls[0], stream=True) as r:
                events = await read_events(r)
            assert events[-1] == b"[DONE]" and len(events) == 40 + 2  # 40 tokens, garbage, [DONE]
            for e in events[:2] + events[3:-1]:
                json.loads(e)
            with pytest.raises(ValueError):  # not UTF-8, not JSON
                json.loads(events[2])
            assert b"\n" not in events[2] and b"\r" not in events[2]
            assert only(f.fault_counts(), malformed=1)

    run(main())


def test_malformed_truncated_event():
    async def main():
        async with fleet("malformed=1:after=3:truncated") as f, aiohttp.ClientSession() as s:
            async with await post(s, f.urls[0], stream=True) as r:
                events = await read_events(r)
            bad = events[3]
            with pytest.raises(json.JSONDecodeError):
                json.loads(bad)
            assert bad.startswith(b'{"id":"cmpl-') and events[4].startswith(bad) and len(bad) < len(events[4])
            assert events[-1] == b"[DONE]"
            assert only(f.fault_counts(), malformed=1)

    run(main())


@pytest.mark.parametrize("version", [aiohttp.HttpVersion11, aiohttp.HttpVersion10])
def test_inband_error_event_has_vllms_shape(version):
    async def main():
        async with fleet("inband=1:after=2") as f, aiohttp.ClientSession(version=version) as s:
            for _ in range(2):
                async with await post(s, f.urls[0], stream=True) as r:
                    assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
                    events = await read_events(r)
                assert len(events) == 4 and events[3] == b"[DONE]"
                json.loads(events[0]), json.loads(events[1])
                error = json.loads(events[2])
                # vLLM's in-band error: non-compact JSON (", " and ": "), these keys in this order
                assert events[2] == json.dumps(error).encode()
                assert list(error) == ["error"] and list(error["error"]) == [
                    "message",
                    "type",
                    "param",
                    "code",
                ]
                assert (error["error"]["type"], error["error"]["param"], error["error"]["code"]) == (
                    "InternalServerError",
                    None,
                    500,
                )
            assert only(await metric_counts(s, f.urls[0]), inband=2)

    run(main())


def test_kill_at_a_rate_drops_every_stream_and_the_server_comes_back():
    async def main():
        async with (
            fleet("kill=1:800ms:after=3", tokens_per_second=2000, min_step_s=0.01) as f,
            aiohttp.ClientSession() as s,
        ):
            url, port = f.urls[0], f.servers[0].port
            async with await post(s, url, stream=True, max_tokens=500) as first:
                got = [await next_event(first)]
                async with await post(s, url, stream=True, max_tokens=500) as second:  # one step behind
                    with pytest.raises(aiohttp.ClientPayloadError):
                        while True:
                            got.append(await next_event(first))
                    assert len(got) == 3  # the stream that drew the kill got its 3 events
                    with pytest.raises(aiohttp.ClientPayloadError):  # and the other one is cut too
                        await second.read()
            await until(lambda: refused(s, url))  # not listening
            await until(lambda: up(s, url))
            assert f.servers[0].port == port
            assert only(await metric_counts(s, url), kill=1)  # the second died before its own draw fired

    run(main())


def test_scheduled_kill_takes_one_server_down_then_back():
    async def main():
        async with fleet("kill=server1@200ms+800ms", servers=2) as f, aiohttp.ClientSession() as s:
            a, b = f.urls
            await until(lambda: refused(s, b))
            assert not await refused(s, a)  # the others go on
            async with await post(s, a, stream=True) as r:
                assert (await read_events(r))[-1] == b"[DONE]"
            await until(lambda: up(s, b))
            assert f.urls[1] == b and only(await metric_counts(s, b), kill=1)
            assert only(await metric_counts(s, a))

    run(main())


def test_scheduled_kill_cuts_open_streams():
    async def main():
        async with (
            fleet("kill=server0@300ms+300ms", tokens_per_second=2000, min_step_s=0.01) as f,
            aiohttp.ClientSession() as s,
        ):
            async with await post(s, f.urls[0], stream=True, max_tokens=3000) as r:
                await next_event(r)
                with pytest.raises(aiohttp.ClientPayloadError):
                    await r.read()
            assert f.fault_counts()["kill"] == 1

    run(main())


def test_fleet_down_refuses_connections_then_recovers():
    async def main():
        async with fleet("fleet_down=@200ms+700ms", servers=3) as f, aiohttp.ClientSession() as s:
            assert not any([await refused(s, u) for u in f.urls])
            await until(lambda: _all(refused(s, u) for u in f.urls))
            await until(lambda: _all(up(s, u) for u in f.urls))
            for url in f.urls:
                async with await post(s, url, stream=True) as r:
                    assert (await read_events(r))[-1] == b"[DONE]"
                assert only(await metric_counts(s, url), fleet_down=1)  # counted on each server it took down
            assert only(f.fault_counts(), fleet_down=3)

    run(main())


async def _all(awaitables) -> bool:
    return all([await a for a in awaitables])


def test_overlapping_outages_nest():
    """server0's kill lasts past the fleet outage: it stays down when the others come back."""

    async def main():
        async with (
            fleet("kill=server0@100ms+2s,fleet_down=@300ms+300ms", servers=2) as f,
            aiohttp.ClientSession() as s,
        ):
            a, b = f.urls
            await until(lambda: refused(s, b))
            await until(lambda: up(s, b))
            assert await refused(s, a)
            await until(lambda: up(s, a))
            assert f.fault_counts()["kill"] == 1 and f.fault_counts()["fleet_down"] == 2

    run(main())


def test_degraded_server_fails_health():
    async def main():
        async with (
            fleet("degrade=server0@100ms+600ms,degrade=server1@100ms+600ms:errors", servers=2) as f,
            aiohttp.ClientSession() as s,
        ):
            a, b = f.urls

            async def health(url: str) -> int:
                async with s.get(url + "/health") as r:
                    assert await r.read() == b""  # vLLM's 503 here has an empty body, like its 200
                    return r.status

            assert await health(a) == 200
            await until(lambda: _eq(health(a), 503))
            assert await health(b) == 503
            async with await post(s, a, stream=True) as r:  # degraded, still serving
                assert r.status == 200 and (await read_events(r))[-1] == b"[DONE]"
            async with await post(s, b, stream=True) as r:  # degraded with errors: vLLM's engine-dead 500
                assert r.status == 500 and await r.read() == b""
            await until(lambda: _eq(health(a), 200))
            await until(lambda: _eq(health(b), 200))
            async with await post(s, b, stream=True) as r:
                assert r.status == 200
                await r.read()
            assert only(f.fault_counts(), degrade=2)

    run(main())


async def _eq(awaitable, value) -> bool:
    return await awaitable == value


# -- counts, logs, determinism over HTTP -------------------------------------------------------


def test_counts_and_logs_match_the_predicted_draws(caplog):
    spec_text = "http503=0.2,reset=0.2:after=1,cut=0.2:after=1"
    spec = parse_faults(spec_text)
    predicted = [spec.draw(5, 0, k, True) for k in range(30)]

    async def main():
        observed = []
        async with fleet(spec_text, seed=5) as f, aiohttp.ClientSession() as s:
            for _ in range(30):
                try:
                    async with await post(s, f.urls[0], stream=True, max_tokens=5) as r:
                        if r.status == 503:
                            observed.append("http503")
                            continue
                        events = await read_events(r)
                        observed.append(None if events[-1] == b"[DONE]" else "cut")
                except aiohttp.ClientPayloadError:
                    observed.append("reset")
            return observed, await metric_counts(s, f.urls[0]), f.fault_counts()

    with caplog.at_level(logging.INFO, logger="vllm_sim.faults"):
        observed, scraped, counts = run(main())
    assert observed == [p.kind if p else None for p in predicted]
    expected = {k: observed.count(k) for k in ("http503", "reset", "cut")}
    assert all(expected.values()) and only(counts, **expected) and only(scraped, **expected)
    lines = [r.getMessage() for r in caplog.records if r.name == "vllm_sim.faults"]
    assert len(lines) == sum(expected.values())
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "vllm_sim.faults")
    assert sum(line.startswith("fault reset on server0") for line in lines) == expected["reset"]


def test_the_same_seed_replays_the_same_faults_over_http():
    async def statuses(seed: int) -> list[int]:
        async with fleet("http503=0.3,http429=0.3", seed=seed) as f, aiohttp.ClientSession() as s:
            out = []
            for _ in range(40):
                async with await post(s, f.urls[0], max_tokens=1) as r:
                    await r.read()
                    out.append(r.status)
            return out

    first = run(statuses(3))
    assert run(statuses(3)) == first and {200, 429, 503} <= set(first)
    assert run(statuses(4)) != first


def test_counts_survive_a_restart():
    async def main():
        async with fleet("http429=1,kill=server0@300ms+600ms") as f, aiohttp.ClientSession() as s:
            async with await post(s, f.urls[0]) as r:
                assert r.status == 429
            await until(lambda: refused(s, f.urls[0]))
            await until(lambda: up(s, f.urls[0]))
            assert only(await metric_counts(s, f.urls[0]), http429=1, kill=1)

    run(main())


# -- the command -------------------------------------------------------------------------------


def _fails(*args: str) -> str:
    done = subprocess.run([*SIMULATE, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, lines
    return lines[0]


def test_command_rejects_a_bad_spec_in_one_line(tmp_path):
    hosts = str(tmp_path / "hosts.txt")
    assert "unknown kind 'explode'" in _fails(
        "--servers", "1", "--hosts-file", hosts, "--faults", "explode=1"
    )
    assert "no server1 in a fleet of 1" in _fails(
        "--servers", "1", "--hosts-file", hosts, "--faults", "kill=server1@1s"
    )


def test_command_injects_and_logs_faults(tmp_path):
    hosts = tmp_path / "hosts.txt"
    args = [
        "--servers",
        "1",
        "--hosts-file",
        str(hosts),
        "--faults",
        "http429=1:retry=4s",
        "--faults-seed",
        "9",
    ]
    proc = subprocess.Popen([*SIMULATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not hosts.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no hosts file"
            time.sleep(0.05)
        url = hosts.read_text().splitlines()[1]

        async def main():
            async with aiohttp.ClientSession() as s:
                async with await post(s, url) as r:
                    assert r.status == 429 and r.headers["Retry-After"] == "4"
                return await metric_counts(s, url)

        assert only(run(main()), http429=1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "injecting faults http429=1:retry=4s (seed 9)" in err
    assert re.search(r"I fault http429 on server0 \(http://127\.0\.0\.1:\d+\): 429 before streaming", err), (
        err
    )


# -- broken-server faults and positions counted from the end (issue 9) ----------------------------

USAGE = {"stream_options": {"include_usage": True}}


async def _events_of(spec: str, n: int = 1, **body) -> tuple[list[bytes], dict[str, int]]:
    """One streaming request's event payloads (after `data: `), and the faults counted."""
    async with fleet(spec) as f, aiohttp.ClientSession() as s:
        async with await post(s, f.urls[0], stream=True, n=n, **USAGE, **body) as r:
            events = await read_events(r)
        return events, f.fault_counts()


def _finishing(event: bytes) -> bool:
    return b'"finish_reason":"' in event


def test_new_kinds_and_before_parse_and_print_back():
    spec = parse_faults(
        "dup=0.1:before=0-3,bad_index=0.1:after=2,bad_utf8=0.1,surrogate=0.1:before=1,usage=0.1,"
        "reset=0.1:before=0"
    )
    rates = {f.kind: f for f in spec.rates}
    assert (
        rates["dup"].before == (0, 3)
        and rates["surrogate"].before == (1, 1)
        and rates["reset"].before == (0, 0)
    )
    assert rates["bad_index"].after == (2, 2) and rates["bad_index"].before is None
    assert parse_faults(str(spec)) == spec
    for bad, message in [
        ("reset=0.1:after=1:before=2", "conflicts"),
        ("usage=0.1:after=1", "takes no option"),
        ("dup=0.1:before=x", "before takes a count"),
        ("cut=0.1:before=5-1", "empty range"),
    ]:
        with pytest.raises(FaultSpecError, match=message):
            parse_faults(bad)


@pytest.mark.parametrize("before", [0, 1, 2, 3])
def test_before_counts_events_back_from_done(before):
    """n=1, 40 tokens: 39 running events, the finishing one, the usage chunk, [DONE]. A reset with
    K events left lets exactly 42 - 1 - K events through."""

    async def main():
        async with fleet(f"reset=1:before={before}") as f, aiohttp.ClientSession() as s:
            async with await post(s, f.urls[0], stream=True, **USAGE) as r:
                got = []
                with pytest.raises(aiohttp.ClientPayloadError):
                    while True:
                        got.append(await next_event(r))
            assert len(got) == 41 - before
            assert only(f.fault_counts(), reset=1)

    run(main())


def test_dup_sends_a_finishing_event_twice_even_as_the_last_event():
    events, counts = run(_events_of("dup=1:before=0", n=2))
    finishing = [e for e in events if _finishing(e)]
    assert len(finishing) == 3 and finishing[-1] == finishing[-2]  # the last one again, just before [DONE]
    assert events[-2] == finishing[-1] and events[-1] == b"[DONE]" and only(counts, dup=1)
    events, _ = run(_events_of("dup=1:after=3", n=2))  # mid-stream: the next finishing event, twice
    i = next(i for i, e in enumerate(events) if _finishing(e))
    assert events[i] == events[i + 1] and i >= 3


def test_bad_index_utf8_and_surrogate_alter_the_next_choice_event():
    events, counts = run(_events_of("bad_index=1:after=3"))
    assert json.loads(events[3])["choices"][0]["index"] == 1000000 and only(counts, bad_index=1)
    assert len(events) == 40 + 2  # altered, not added
    events, _ = run(_events_of("bad_utf8=1:before=2"))  # the last choice event: the finishing one
    bad = events[-3]
    assert _finishing(bad) and b'"text":"\xff\xfe' in bad
    with pytest.raises(UnicodeDecodeError):
        bad.decode()
    events, _ = run(_events_of("surrogate=1:after=0"))
    assert b'"text":"\\ud800' in events[0]


def test_usage_fault_sends_an_absurd_count():
    events, counts = run(_events_of("usage=1"))
    usage = json.loads(events[-2])
    assert (
        usage["choices"] == [] and usage["usage"]["completion_tokens"] == 2**64 - 1 and only(counts, usage=1)
    )


def test_a_server_that_ignores_n_answers_one_choice():
    async def main():
        async with fleet("", ignore_n=True) as f, aiohttp.ClientSession() as s:
            async with await post(s, f.urls[0], stream=True, n=4, **USAGE) as r:
                events = await read_events(r)
        indices = {c["index"] for e in events[:-1] for c in json.loads(e)["choices"]}
        assert indices == {0} and events[-1] == b"[DONE]"

    run(main())
