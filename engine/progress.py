"""Progress while a sweep runs: a bar with rate and ETA on a terminal, a summary line
every `interval` seconds otherwise (logs, CI, nohup)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

log = logging.getLogger("engine.progress")


class Progress:
    def __init__(
        self, total: int, initial: int, status: Callable[[], str] = str, enabled: bool = True, interval: float = 30.0
    ):
        self.total = total
        self._status = status  # extra figures for the line (pass@1, queue), asked for only on refresh
        self.done = initial
        self._interval = interval
        self._start = time.monotonic()
        self._start_done = initial
        self._last_log = self._start
        self._tokens = 0
        self._window = (self._start, 0)  # (time, tokens) at the start of the rate window
        self._token_rate = 0.0
        self._postfix = ""
        self._bar = None
        self._enabled = enabled
        if enabled and sys.stderr.isatty():
            self._bar = tqdm(
                total=total, initial=initial, unit="sample", desc="verified", dynamic_ncols=True,
                smoothing=0.05, file=sys.stderr, mininterval=0.25,
            )

    def tokens(self, k: int) -> None:
        self._tokens += k

    def advance(self, k: int = 1) -> None:
        self.done += k
        now = time.monotonic()
        since, tokens = self._window
        if now - since >= 2.0:
            self._token_rate = (self._tokens - tokens) / (now - since)
            self._window = (now, self._tokens)
            self._postfix = f"{self._token_rate:,.0f} tok/s, {self._status()}"
            if self._bar is not None:
                self._bar.set_postfix_str(self._postfix, refresh=False)
        if self._bar is not None:
            self._bar.update(k)
        elif self._enabled and now - self._last_log >= self._interval:
            self._last_log = now
            log.info("%s", self.line())

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_text = "?" if eta == float("inf") else time.strftime("%H:%M:%S", time.gmtime(eta))
        share = self.done / self.total if self.total else 1.0
        return f"verified {self.done}/{self.total} ({share:.1%}), {rate:,.1f} samples/s, {self._postfix}, ETA {eta_text}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
