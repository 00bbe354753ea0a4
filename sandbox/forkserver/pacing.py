"""Replies handled in batches while every jail is busy: fewer wake-ups of the engine.

Each reply read wakes the engine's event loop; on a machine whose cores run the jails' forks, a
wake-up costs more than the reply's own work (the caches are cold again), so at full load the
engine spent ~0.18 ms of CPU per sample, mostly in waking up. While every jail already holds its
next program (pipelined, worker.py), reading a reply a few milliseconds later costs no jail any
work: so the loop then pauses PAUSE_S once per iteration, and the next iteration reads the
replies of all the jails that finished meanwhile at once (~0.10 ms per sample,
bench/verify_scale.py). The pause blocks the whole loop on purpose (a timer would wake it for
each reply again); everything else the loop serves (streams, timers, the metrics page) is late
by at most PAUSE_S meanwhile. Below full load nothing pauses: a lone sample is answered at once;
nor unless there are more jails than cores. With fewer, the engine has a core of its own (its
caches stay); with one per core, a jail that finished what it held during a pause leaves its
core idle, with no other jail to take it (bench/verify.py's file (a) with --workers 2 on two
cores: 3.96 s paced against 3.53 s unpaced; with 3 or 4 jails, as fast as unpaced).

The pause adapts: a jail that answered every program it held within one pause ran dry (it
waited for the engine), so the pause halves (`ran_dry`); each pause that left none dry lets it
grow again by PAUSE_STEP_S, up to PAUSE_S. It starts short (a burst of a few programs, such as
preflight's, is barely paused), one jail running fast programs keeps it short, and four jails on
two cores reach the longest within ~0.1 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

PAUSE_S = 0.010  # the longest pause: a jail holds PIPELINE_DEPTH programs, mostly more than this
MIN_PAUSE_S = 0.0005
PAUSE_STEP_S = 0.0005


class Pacer:
    """Pauses the event loop once per iteration while `saturated()` says every jail is busy."""

    def __init__(self, saturated: Callable[[], bool], pause_s: float = PAUSE_S, sleep=time.sleep):
        self._saturated = saturated
        self._longest = pause_s  # 0: never pause
        self._shortest = min(MIN_PAUSE_S, pause_s)
        self._pause_s = self._shortest  # grows while no jail runs dry
        self._sleep = sleep
        self._active = False
        self._stopped = False
        self.pauses = 0  # how often it paused: what its tests and benchmarks look at

    def poke(self) -> None:
        """Called when work was handed out: start pausing if every jail is now busy."""
        if not self._active and not self._stopped and self._longest > 0 and self._saturated():
            self._active = True
            asyncio.get_running_loop().call_soon(self._tick)

    def ran_dry(self) -> None:
        """A jail answered every program it held: it waited for the engine. Shorter pauses."""
        self._pause_s = max(self._shortest, self._pause_s / 2)

    def stop(self) -> None:
        self._stopped = True

    def _tick(self) -> None:
        if self._stopped or not self._saturated():
            self._active = False
            return
        self.pauses += 1
        self._sleep(self._pause_s)
        self._pause_s = min(self._longest, self._pause_s + PAUSE_STEP_S)  # ran_dry() may halve it
        asyncio.get_running_loop().call_soon(self._tick)  # the next iteration, after its I/O
