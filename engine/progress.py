"""Progress while work runs: a bar on a terminal, a summary line every `interval` seconds
otherwise (logs, CI, nohup). It only presents a `Snapshot` (engine/sweep/snapshot.py): a sweep's
own, or a `Tally`'s for work without a fleet (`engine verify`). It refreshes on a timer, not only
when a sample is verified, so a stall shows as a stall: the rate falls to 0, the ETA goes to '?',
and the line says "no progress for N s" and how many servers are up."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable

from engine.sweep.snapshot import Meter, Snapshot

log = logging.getLogger("engine.progress")


class Tally:
    """A snapshot source for verdicts counted against a total, with no fleet and no queue."""

    def __init__(self, total: int, initial: int = 0, clock: Callable[[], float] = time.monotonic):
        self.total = total
        self.done = initial
        self._clock = clock
        self._last_done_at = clock()
        self._meter = Meter(self._last_done_at, initial)

    def advance(self, k: int = 1) -> None:
        self.done += k
        self._last_done_at = self._clock()

    def snapshot(self) -> Snapshot:
        now = self._clock()
        samples_per_s, _ = self._meter.rates(now, self.done, 0)
        return Snapshot(
            state="running",
            target=self.total,
            verified=self.done,
            problems=0,
            solved=0,
            pass_at_1=None,
            tokens=0,
            samples_per_s=samples_per_s,
            tokens_per_s=0.0,
            fleet=(),  # the line names no servers
            queue_depth=0,
            queue_held=0,
            queue_capacity=0,
            no_progress_s=now - self._last_done_at,
        )


class Progress:
    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        enabled: bool = True,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._snapshot = snapshot
        self._clock = clock
        self._interval = interval
        self._enabled = enabled
        self._last_log = clock()
        self._stall_reported = False
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm  # only to draw a bar: `write_line` knows none is drawn without it

            first = snapshot()
            self._bar = tqdm(
                total=first.target,
                initial=first.verified,
                unit="sample",
                desc="verified",
                dynamic_ncols=True,
                file=sys.stderr,
                bar_format="{desc} {n_fmt}/{total_fmt} ({percentage:.1f}%) |{bar}|{postfix}",
            )

    def tick(self) -> None:
        """The timer: new figures on the bar, or a summary line every `interval` (at once when a
        stall begins)."""
        snap = self._snapshot()
        if self._bar is not None:
            self._bar.n = snap.verified
            self._bar.set_postfix_str(figures(snap), refresh=True)
            return
        now = self._clock()
        if not snap.stalled:
            self._stall_reported = False
        if self._enabled and (
            now - self._last_log >= self._interval or (snap.stalled and not self._stall_reported)
        ):
            self._last_log = now
            self._stall_reported = self._stall_reported or snap.stalled
            log.info("%s", line(snap))

    async def refresh_forever(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            self.tick()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def write_line(text: str) -> None:
    """One line on stderr, above the progress bar when one is drawn. tqdm is imported only to
    draw a bar (Progress), so while it is not imported no bar can be torn and a plain write is
    what tqdm.write would do; commands without a bar (--json, no terminal) never import it."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        sys.stderr.write(text + "\n")


def figures(snap: Snapshot) -> str:
    eta = (
        "?" if snap.eta_s is None or snap.samples_per_s <= 0 else _duration(snap.eta_s)
    )  # none from a stale rate
    parts = [f"{snap.samples_per_s:,.1f} samples/s", f"{snap.tokens_per_s:,.0f} tok/s"]
    if snap.servers:  # a sweep: its fleet and its queue
        parts.append(f"servers up {snap.servers_up}/{snap.servers}")
        p1 = "-" if snap.pass_at_1 is None else f"{snap.pass_at_1:.3f}"
        parts.append(f"pass@1 {p1}, queue {snap.queue_depth}")
    if snap.stalled:
        parts.append(f"no progress for {snap.no_progress_s:.0f} s")
    return ", ".join(parts) + f", ETA {eta}"


def line(snap: Snapshot) -> str:
    share = snap.verified / snap.target if snap.target else 1.0
    return f"verified {snap.verified}/{snap.target} ({share:.1%}), {figures(snap)}"


def _duration(seconds: float) -> str:
    return (
        time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 86400:.1f} days"
    )
