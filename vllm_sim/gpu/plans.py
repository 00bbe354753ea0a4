"""Emission plans: what a sample streams, step by step, under one set of stop strings.

A plan runs the stop scanner once and keeps, per step, the released text already encoded as a
JSON string, so that emitting a chunk costs a list lookup and a byte concatenation. Plans are
shared by every sequence with the same sample and stop strings (in a HumanEval sweep, a few
per problem) and grow lazily, only as far as some sequence has got. A sample that ends by
itself (a chat answer) stops at its end-of-sequence step: that token releases whatever the stop
scanner still held back and ends the sequence with finish_reason "stop" and no stop_reason.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Callable

import orjson

from vllm_sim.gpu.stops import StopScanner
from vllm_sim.model.synthetic import SyntheticModel, SyntheticSample

_BLOCK = 16  # steps computed at a time


class EmissionPlan:
    __slots__ = (
        "deltas",
        "stop_step",
        "stop_reason",
        "_scanner",
        "_token",
        "_released",
        "_generated",
        "_meter",
        "_eos_step",
    )

    def __init__(
        self,
        token: Callable[[int], str],
        scanner: StopScanner,
        meter: list[int] | None = None,
        eos_step: int = -1,
    ):
        self.deltas: list[bytes] = []  # step k -> the JSON string released by step k
        self.stop_step = -1  # the step that ended the sequence (a stop string or end of sequence), if any
        self.stop_reason: str | None = None  # the stop string; None at the end of sequence
        self._scanner = scanner
        self._token = token
        self._released = array("l")  # step k -> characters released once step k is done
        self._generated = array("l")  # step k -> characters generated (cut at a stop)
        self._meter = meter  # the cache's running count of steps held, while cached
        self._eos_step = eos_step  # the step that generates the end-of-sequence token (-1: never)

    def extend(self, k: int) -> None:
        """Compute steps up to at least k (unless the sample stops earlier)."""
        if self.stop_step >= 0:
            return
        scanner = self._scanner
        start = len(self.deltas)
        for step in range(start, max(k + 1, start + _BLOCK)):
            if step == self._eos_step:  # its text is empty; what was held back comes out with it
                self.deltas.append(orjson.dumps(scanner.flush()))
                self._released.append(scanner.released)
                self._generated.append(len(scanner.text))
                self.stop_step = step
                break
            delta = scanner.feed(self._token(step))
            self.deltas.append(orjson.dumps(delta))
            self._released.append(scanner.released)
            self._generated.append(len(scanner.text))
            if scanner.stop_reason is not None:
                self.stop_step, self.stop_reason = step, scanner.stop_reason
                break
        if self._meter is not None:
            self._meter[0] += len(self.deltas) - start

    def final_delta(self, k: int) -> bytes:
        """The JSON string of the last chunk when the sequence ends after step k by length:
        this step's text plus everything still held back."""
        if k == self.stop_step:
            return self.deltas[k]
        start = self._released[k - 1] if k else 0
        return orjson.dumps(self._scanner.text[start : self._generated[k]])

    def text(self, steps: int) -> str:
        """The whole completion after `steps` tokens (or up to the stop)."""
        self.extend(steps - 1)
        last = min(steps, len(self._generated)) - 1
        return self._scanner.text[: self._generated[last]] if last >= 0 else ""

    def forget(self) -> None:
        self._meter = None


class PlanCache:
    """Plans by (sample, stop strings), least recently used first out, bounded in steps held."""

    def __init__(self, model: SyntheticModel, max_steps: int = 500_000):
        self._model = model
        self._plans: OrderedDict[tuple, EmissionPlan] = OrderedDict()
        self._meter = [0]
        self._max_steps = max_steps

    def get(
        self, sample: SyntheticSample, stops: tuple[str, ...], include_stop: bool = False
    ) -> EmissionPlan:
        key = (sample.key, stops, include_stop)
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        model = self._model
        eos = len(sample.head) if sample.eos else -1
        plan = EmissionPlan(
            lambda k: model.token(sample, k), StopScanner(stops, include_stop), self._meter, eos
        )
        self._plans[key] = plan
        while self._meter[0] > self._max_steps and len(self._plans) > 1:
            _, old = self._plans.popitem(last=False)
            self._meter[0] -= len(old.deltas)
            old.forget()  # sequences still using it keep it; it no longer counts here
        return plan
