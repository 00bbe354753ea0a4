"""Progress while a sweep runs: a bar on a terminal, a summary line every `interval` seconds
otherwise (logs, CI, nohup). It refreshes on a timer, not only when a sample is verified, so a
stall shows as a stall: the rate is measured over the last `RATE_WINDOW_S` and falls to 0, the
ETA goes to '?', and the line says "no progress for N s" and how many servers are up."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Callable

from tqdm import tqdm

from metrics.sweep_state import STALL_AFTER_S  # one threshold: the line, `engine status` and the live page

log = logging.getLogger("engine.progress")

RATE_WINDOW_S = 30.0


class Progress:
    def __init__(
        self,
        total: int,
        initial: int,
        status: Callable[[], str] = str,
        enabled: bool = True,
        interval: float = 30.0,
        servers: Callable[[], tuple[int, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total = total
        self.done = initial
        self._status = status  # extra figures for the line (pass@1, queue), asked for only on refresh
        self._servers = servers  # () -> (up, total), for a sweep
        self._clock = clock
        self._interval = interval
        self._enabled = enabled
        now = clock()
        self._last_done_at = now
        self._last_log = now
        self._history: deque[tuple[float, int, int]] = deque([(now, initial, 0)])  # (time, done, tokens)
        self._tokens = 0
        self._stall_reported = False
        self._bar = None
        if enabled and sys.stderr.isatty():
            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="sample",
                desc="verified",
                dynamic_ncols=True,
                file=sys.stderr,
                bar_format="{desc} {n_fmt}/{total_fmt} ({percentage:.1f}%) |{bar}|{postfix}",
            )

    def tokens(self, k: int) -> None:
        self._tokens += k

    def advance(self, k: int = 1) -> None:
        self.done += k
        self._last_done_at = self._clock()
        self._stall_reported = False
        if self._bar is not None:
            self._bar.update(k)

    def tick(self) -> None:
        """The timer: new figures on the bar, or a summary line every `interval` (at once when a
        stall begins)."""
        now = self._clock()
        self._history.append((now, self.done, self._tokens))
        while len(self._history) > 2 and now - self._history[1][0] >= RATE_WINDOW_S:
            self._history.popleft()
        if self._bar is not None:
            self._bar.set_postfix_str(self.figures(now), refresh=True)
            return
        stalled = self.stalled_s(now) is not None
        if self._enabled and (
            now - self._last_log >= self._interval or (stalled and not self._stall_reported)
        ):
            self._last_log = now
            self._stall_reported = self._stall_reported or stalled
            log.info("%s", self.line(now))

    async def refresh_forever(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            self.tick()

    def stalled_s(self, now: float | None = None) -> float | None:
        """Seconds without a verdict, once that is `STALL_AFTER_S` or more (and work remains)."""
        idle = (self._clock() if now is None else now) - self._last_done_at
        return idle if idle >= STALL_AFTER_S and self.done < self.total else None

    def rates(self, now: float) -> tuple[float, float]:
        """(samples/s, tokens/s) over the last RATE_WINDOW_S."""
        then, done, tokens = self._history[0]
        span = now - then
        return ((self.done - done) / span, (self._tokens - tokens) / span) if span > 0 else (0.0, 0.0)

    def figures(self, now: float) -> str:
        rate, token_rate = self.rates(now)
        stalled = self.stalled_s(now)
        remaining = self.total - self.done
        eta = (
            "?" if rate <= 0 or stalled is not None else _duration(remaining / rate)
        )  # no ETA from a stale rate
        parts = [f"{rate:,.1f} samples/s", f"{token_rate:,.0f} tok/s"]
        if self._servers is not None:
            up, servers = self._servers()
            parts.append(f"servers up {up}/{servers}")
        status = self._status()
        if status:
            parts.append(status)
        if stalled is not None:
            parts.append(f"no progress for {stalled:.0f} s")
        return ", ".join(parts) + f", ETA {eta}"

    def line(self, now: float | None = None) -> str:
        now = self._clock() if now is None else now
        share = self.done / self.total if self.total else 1.0
        return f"verified {self.done}/{self.total} ({share:.1%}), {self.figures(now)}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _duration(seconds: float) -> str:
    return (
        time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 86400:.1f} days"
    )
