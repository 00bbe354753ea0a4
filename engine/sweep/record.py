"""Recording a verdict: the store, the running pass@k, the metrics, and the counts a snapshot
reads. One place, so a verdict is counted the same way everywhere."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from engine.records import Sample
from engine.store import StoredVerdict
from metrics.exporter import EngineMetrics
from metrics.running import RunningPassAtK
from sandbox import Outcome, Verdict

log = logging.getLogger(__name__)


class VerdictLog(Protocol):
    def stage_verdict(self, v: StoredVerdict) -> None: ...


class Recorder:
    def __init__(self, *, store: VerdictLog, running: RunningPassAtK, metrics: EngineMetrics):
        self.store = store
        self.running = running
        self.metrics = metrics
        self.verified = 0  # verdicts recorded by this process (infra errors aside)
        self.infra_errors = 0  # samples whose sandbox kept failing: stored as such, retried on resume
        self.last_verdict_at: float | None = (
            None  # unix time, infra errors included (as the store's verified_at)
        )

    def record(self, sample: Sample, outcome: Outcome) -> None:
        verdict = outcome.verdict.value
        self.store.stage_verdict(StoredVerdict.of(sample.task_id, sample.sample_index, outcome))
        self.last_verdict_at = time.time()
        if outcome.reused:
            self.metrics.verify_dedup.inc()
        else:
            self.metrics.verify_seconds.observe(outcome.wall_s)
        if outcome.verdict is Verdict.infra_error:  # not a verdict: out of pass@k, verified again on resume
            self.infra_errors += 1
            self.metrics.infra_errors.inc()
        else:
            self.running.add(sample.task_id, verdict == "passed")
            self.verified += 1
            self.metrics.samples_verified.labels(verdict).inc()
        log.debug(
            "%s/%d %s in %.3f s (%s)",
            *(sample.task_id, sample.sample_index, verdict, outcome.wall_s, outcome.detail),
        )
