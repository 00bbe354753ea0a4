"""Fault specifications for `engine simulate --faults`: parsing, validation, per-request draws.

Pure: no I/O, no event loop. `injection` and `controller` carry the faults out.

A spec is a comma-separated list of items, each either a per-request rate or a scheduled event:

    KIND=RATE[:OPT...]                      on each completion or chat request, probability RATE
    KIND=[serverI]@START[+DURATION][:OPT...]  at START (from when the fleet listens), for DURATION

    reset=0.05,http503=0.02,stall=0.01:30s,kill=server2@10s+5s,fleet_down=@20s+15s

RATE is a probability (`0.05`) or a percentage (`5%`). Durations always carry a unit: `250ms`,
`0.5s`, `30s`, `2m`. `serverI` is the I-th server, from 0, in hosts-file order. Options:
`after=N` (or `after=A-B`, drawn per request) is how many SSE events reach the client before
the fault (default 1); when the stream has fewer, the fault happens just before `[DONE]`.
`before=K` (or `before=A-B`) counts from the other end instead: the fault happens with K events
left before `[DONE]` (`before=0`: just before it; `before=1`: before the usage chunk), the
events of the stream's end being held back until `[DONE]` shows where the end is.

Per-request kinds; at most one fault per request, rates add up to at most 1:

    http500     500 before streaming; body=empty (vLLM's engine-failure handler, the default),
                body=plain (uvicorn/Starlette's `Internal Server Error`) or body=json (vLLM's
                error envelope)
    http503     503 before streaming, vLLM's error envelope; retry=T adds a Retry-After header
    http429     429 before streaming with `Retry-After` (retry=T, default 1s, whole seconds)
    slow_first  the headers, then nothing for T (required) before generation starts
    stall       after N events nothing for T (required), then the stream goes on, or with
                `close` the connection is closed (FIN, the chunked body left unfinished)
    reset       after N events the connection is reset (TCP RST)
    cut         after N events the response ends cleanly, without `[DONE]` (the connection
                stays open for the next request); with `close` the connection is closed
                instead (FIN, the chunked body left unfinished)
    malformed   after N events one malformed event, then the stream goes on to `[DONE]`:
                `data: ` and garbage bytes (default), or with `truncated` a JSON chunk cut short
    inband      after N events vLLM's in-band error event (non-compact JSON), `[DONE]`, and a
                clean end of the response
    kill        after N events the server is killed (listener closed, every connection
                dropped) and restarts after T (required)
    dup         the next event that finishes a choice is sent twice (a duplicate choice index;
                at the end: the last finishing event again), then the stream goes on
    bad_index   the next choice event gets index 1000000 (out of range), then the stream goes on
    bad_utf8    the next choice event's text gets invalid UTF-8 bytes, then the stream goes on
    surrogate   the next choice event's text gets a lone surrogate (the escape \ud800)
    usage       the usage chunk says completion_tokens = 2^64 - 1
    (for the four before usage, with no choice event left: the last finishing event, altered)

Stream kinds apply to streaming requests only; a non-streaming request that draws one is
served normally (and nothing is counted). The draw for the k-th request a server receives is a
pure function of (seed, server index, k), so a seed replays the same faults.

Scheduled kinds (DURATION omitted: for good):

    kill=serverI@T[+D]          the server stops listening and drops its connections; back after D
    fleet_down=@T[+D]           every server at once
    degrade=serverI@T[+D]       its /health answers 503 (empty body, as vLLM's when the engine
                                is dead); with `errors` its completions also fail, with vLLM's
                                empty-bodied 500
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from engine.errors import InputError

HTTP_KINDS = ("http500", "http503", "http429")
STREAM_KINDS = (
    "slow_first",
    "stall",
    "reset",
    "cut",
    "malformed",
    "inband",
    "kill",
    "dup",
    "bad_index",
    "bad_utf8",
    "surrogate",
    "usage",
)
RATE_KINDS = HTTP_KINDS + STREAM_KINDS  # also the order in which a request's draw is resolved
SCHEDULED_KINDS = ("kill", "fleet_down", "degrade")
KINDS = tuple(dict.fromkeys(RATE_KINDS + SCHEDULED_KINDS))  # every label of sim_faults_injected_total

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}
_TARGET = re.compile(r"server(\d+)")
_AFTER = re.compile(r"(\d+)(?:-(\d+))?")
_GARBAGE_BYTES = 24

# Which options each kind takes: "T" a bare duration (the kind's time), the rest by name.
_RATE_OPTIONS = {
    "http500": {"body"},
    "http503": {"retry"},
    "http429": {"retry"},
    "slow_first": {"T"},
    "stall": {"T", "after", "before", "close"},
    "reset": {"after", "before"},
    "cut": {"after", "before", "close"},
    "malformed": {"after", "before", "truncated", "garbage"},
    "inband": {"after", "before"},
    "kill": {"T", "after", "before"},
    "dup": {"after", "before"},
    "bad_index": {"after", "before"},
    "bad_utf8": {"after", "before"},
    "surrogate": {"after", "before"},
    "usage": set(),
}
_NEEDS_T = {"slow_first", "stall", "kill"}
_SCHEDULED_OPTIONS = {"kill": set(), "fleet_down": set(), "degrade": {"errors"}}
_BODIES = ("empty", "plain", "json")


class FaultSpecError(InputError, ValueError):
    """A --faults spec that does not parse or does not fit the fleet."""


class _BadDuration(FaultSpecError):
    """A duration without a unit; `parse_faults` says which item it was in."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What one request suffers: a rate fault with its options drawn."""

    kind: str
    after: int = 1  # SSE events delivered before the fault (stream kinds)
    before: int | None = None  # or: events left between the fault and [DONE]
    seconds: float = 0.0  # stall, slow_first: silence; kill: time down
    retry_after: int | None = None  # http429, http503: the Retry-After header
    variant: str = ""  # http500: body; stall: "close"; malformed: "garbage" or "truncated"
    noise: bytes = b""  # malformed garbage


@dataclass(frozen=True, slots=True)
class RateFault:
    kind: str
    rate: float
    seconds: float = 0.0
    after: tuple[int, int] = (1, 1)
    retry_after: int | None = None
    variant: str = ""
    before: tuple[int, int] | None = None

    def plan(self, rng: random.Random) -> FaultPlan:
        lo, hi = self.after
        after = lo if lo == hi else rng.randint(lo, hi)
        before = None if self.before is None else rng.randint(*self.before)
        noise = b""
        if self.kind == "malformed" and self.variant == "garbage":
            # 0xff never starts valid UTF-8 or JSON; no CR/LF, so the event stays one line.
            noise = b"\xff" + rng.randbytes(_GARBAGE_BYTES).replace(b"\n", b"?").replace(b"\r", b"?")
        return FaultPlan(self.kind, after, before, self.seconds, self.retry_after, self.variant, noise)

    def __str__(self) -> str:
        opts = []
        if self.kind in _NEEDS_T:
            opts.append(_fmt_seconds(self.seconds))
        if "after" in _RATE_OPTIONS[self.kind] and self.after != (1, 1):
            lo, hi = self.after
            opts.append(f"after={lo}" if lo == hi else f"after={lo}-{hi}")
        if self.before is not None:
            lo, hi = self.before
            opts.append(f"before={lo}" if lo == hi else f"before={lo}-{hi}")
        if self.retry_after is not None and not (self.kind == "http429" and self.retry_after == 1):
            opts.append(f"retry={self.retry_after}s")
        if self.kind == "http500" and self.variant != "empty":
            opts.append(f"body={self.variant}")
        if self.variant in ("close", "truncated"):
            opts.append(self.variant)
        return ":".join([f"{self.kind}={self.rate:g}", *opts])


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    kind: str
    target: int | None  # a server index; None: every server (fleet_down)
    at: float  # seconds after the fleet started
    duration: float | None  # None: for good
    errors: bool = False  # degrade: completions fail too

    def targets(self, servers: int) -> range:
        return range(servers) if self.target is None else range(self.target, self.target + 1)

    def __str__(self) -> str:
        target = "" if self.target is None else f"server{self.target}"
        text = f"{self.kind}={target}@{_fmt_seconds(self.at)}"
        if self.duration is not None:
            text += f"+{_fmt_seconds(self.duration)}"
        return text + (":errors" if self.errors else "")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    rates: tuple[RateFault, ...] = ()  # in RATE_KINDS order
    events: tuple[ScheduledFault, ...] = ()  # by start time

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        return parse_faults(text)

    def __bool__(self) -> bool:
        return bool(self.rates or self.events)

    def __str__(self) -> str:
        return ",".join(map(str, (*self.rates, *self.events))) or "none"

    def check_fleet(self, servers: int) -> None:
        for event in self.events:
            if event.target is not None and event.target >= servers:
                raise FaultSpecError(
                    f"fault {str(event)!r}: there is no server{event.target} in a fleet of {servers} "
                    f"(servers count from server0)"
                )

    def draw(self, seed: int, server: int, request: int, stream: bool) -> FaultPlan | None:
        """The fault (if any) of the `request`-th completion or chat request server `server` receives."""
        if not self.rates:
            return None
        rng = random.Random(f"faults/{seed}/{server}/{request}")
        u = rng.random()
        edge = 0.0
        for fault in self.rates:
            edge += fault.rate
            if u < edge:
                if fault.kind in STREAM_KINDS and not stream:
                    return None
                return fault.plan(rng)
        return None


def parse_faults(text: str | None) -> FaultSpec:
    """Parse a --faults spec (see the module docstring); raise FaultSpecError in one line."""
    if text is None or text.strip().lower() in ("", "none", "off"):
        return FaultSpec()
    rates: dict[str, RateFault] = {}
    events: list[ScheduledFault] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise FaultSpecError(f"empty item in --faults {text!r}")
        kind, eq, value = item.partition("=")
        kind = kind.strip()
        if not eq or not value.strip():
            raise FaultSpecError(
                f"fault {item!r}: expected KIND=RATE[:OPTIONS] or KIND=[serverI]@START[+DURATION]"
            )
        if kind not in KINDS:
            raise FaultSpecError(f"fault {item!r}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        head, *options = [part.strip() for part in value.split(":")]
        try:
            if "@" in head:
                events.append(_scheduled(item, kind, head, options))
            else:
                if kind in rates:
                    raise FaultSpecError(f"fault {item!r}: {kind} is given a rate twice")
                rates[kind] = _rate(item, kind, head, options)
        except _BadDuration as exc:
            raise FaultSpecError(f"fault {item!r}: {exc}") from None
    total = sum(f.rate for f in rates.values())
    if total > 1 + 1e-9:
        raise FaultSpecError(
            f"--faults: the rates add up to {total:g}; a request suffers at most one fault, "
            f"so they must add up to at most 1"
        )
    ordered = tuple(rates[k] for k in RATE_KINDS if k in rates)
    return FaultSpec(ordered, tuple(sorted(events, key=lambda e: e.at)))


def parse_duration(text: str, what: str = "duration") -> float:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise _BadDuration(f"bad {what} {text!r}: use a number with a unit, e.g. 250ms, 0.5s, 30s, 2m")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _rate(item: str, kind: str, head: str, options: list[str]) -> RateFault:
    if kind not in _RATE_OPTIONS:
        raise FaultSpecError(
            f"fault {item!r}: {kind} is scheduled only, as {kind}=[serverI]@START[+DURATION]"
        )
    rate = _probability(item, head)
    allowed = _RATE_OPTIONS[kind]
    seconds: float | None = None
    after = (1, 1)
    before: tuple[int, int] | None = None
    retry_after = 1 if kind == "http429" else None
    variant = {"http500": "empty", "stall": "continue", "malformed": "garbage"}.get(kind, "")
    seen: set[str] = set()
    for opt in options:
        name, eq, val = opt.partition("=")
        key = name if eq else ("T" if _DURATION.fullmatch(opt) else opt)
        if key != "T" and re.fullmatch(r"[\d.]+", opt):
            raise _BadDuration(f"bad duration {opt!r}: use a number with a unit, e.g. 250ms, 0.5s, 30s, 2m")
        if key not in allowed:
            raise FaultSpecError(
                f"fault {item!r}: {kind} takes no option {opt!r} (it takes: {_describe(allowed)})"
            )
        if (
            key in seen
            or (key in ("close", "truncated", "garbage") and seen & {"close", "truncated", "garbage"})
            or (key in ("after", "before") and seen & {"after", "before"})
        ):
            raise FaultSpecError(f"fault {item!r}: option {opt!r} conflicts with an earlier one")
        seen.add(key)
        if key == "T":
            seconds = parse_duration(opt)
            if seconds <= 0:
                raise FaultSpecError(f"fault {item!r}: the duration must be positive")
        elif key == "after":
            after = _after(item, val)
        elif key == "before":
            before = _after(item, val, "before")
        elif key == "retry":
            retry = parse_duration(val, "retry")
            if retry != int(retry):
                raise FaultSpecError(f"fault {item!r}: Retry-After is whole seconds, got {val!r}")
            retry_after = int(retry)
        elif key == "body":
            if val not in _BODIES:
                raise FaultSpecError(f"fault {item!r}: body must be one of {', '.join(_BODIES)}")
            variant = val
        elif eq:
            raise FaultSpecError(f"fault {item!r}: {name} is a flag and takes no value")
        else:
            variant = key
    if kind in _NEEDS_T and seconds is None:
        raise FaultSpecError(
            f"fault {item!r}: {kind} needs a duration, e.g. {kind}={head}:{_EXAMPLE_T[kind]}"
        )
    return RateFault(kind, rate, seconds or 0.0, after, retry_after, variant, before)


_EXAMPLE_T = {"slow_first": "2s", "stall": "30s", "kill": "5s"}


def _scheduled(item: str, kind: str, head: str, options: list[str]) -> ScheduledFault:
    if kind not in _SCHEDULED_OPTIONS:
        raise FaultSpecError(f"fault {item!r}: {kind} is a per-request rate, as {kind}=RATE[:OPTIONS]")
    target_text, _, when = head.partition("@")
    target: int | None = None
    if kind == "fleet_down":
        if target_text:
            raise FaultSpecError(
                f"fault {item!r}: fleet_down takes every server; write fleet_down=@START[+DURATION]"
            )
    else:
        match = _TARGET.fullmatch(target_text)
        if match is None:
            raise FaultSpecError(f"fault {item!r}: {kind} needs a target, e.g. {kind}=server0@10s+5s")
        target = int(match.group(1))
    start, plus, length = when.partition("+")
    at = parse_duration(start, "start time")
    duration = parse_duration(length) if plus else None
    if duration is not None and duration <= 0:
        raise FaultSpecError(f"fault {item!r}: the duration must be positive")
    errors = False
    for opt in options:
        if opt not in _SCHEDULED_OPTIONS[kind] or (opt == "errors" and errors):
            raise FaultSpecError(
                f"fault {item!r}: {kind} takes no option {opt!r}"
                f" (it takes: {_describe(_SCHEDULED_OPTIONS[kind])})"
            )
        errors = True
    return ScheduledFault(kind, target, at, duration, errors)


def _probability(item: str, text: str) -> float:
    try:
        rate = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise FaultSpecError(
            f"fault {item!r}: {text!r} is not a rate (a probability like 0.05, or 5%)"
        ) from None
    if not 0 <= rate <= 1:
        raise FaultSpecError(f"fault {item!r}: the rate must be between 0 and 1 (0% and 100%)")
    return rate


def _after(item: str, text: str, name: str = "after") -> tuple[int, int]:
    match = _AFTER.fullmatch(text)
    if match is None:
        raise FaultSpecError(f"fault {item!r}: {name} takes a count of events, N or A-B, got {text!r}")
    lo = int(match.group(1))
    hi = int(match.group(2)) if match.group(2) is not None else lo
    if hi < lo:
        raise FaultSpecError(f"fault {item!r}: {name}={text} is an empty range")
    return lo, hi


def _describe(allowed: set[str]) -> str:
    names = {
        "T": "a duration",
        "after": "after=N",
        "before": "before=K",
        "retry": "retry=T",
        "body": "body=empty|plain|json",
    }
    return ", ".join(names.get(a, a) for a in sorted(allowed, key=lambda a: (a != "T", a))) or "no options"


def _fmt_seconds(seconds: float) -> str:
    if seconds and seconds < 1 and seconds * 1000 == int(seconds * 1000):
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:g}s"
