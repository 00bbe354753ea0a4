"""engine_pass_at_k_estimate{k, method}: the running pass@k by each estimator, at scrape time.

`chen` is engine_pass_at_k again (unbiased under uniform sampling only); `beta_binomial` is
the likelihood fit's, which stays valid when sample counts depend on results (adaptive
policies). The fit (a few milliseconds) is redone only when the counts have changed.
"""

from __future__ import annotations

import numpy as np
from prometheus_client.core import GaugeMetricFamily

from engine.analysis.fits import Unfittable, fit_beta_binomial
from metrics.passk import ks_for
from metrics.running import RunningPassAtK

NAME = "engine_pass_at_k_estimate"
HELP = "Running pass@k by estimator: chen (unbiased under uniform sampling) or beta_binomial (likelihood fit)"


class PassAtKEstimateCollector:
    def __init__(self, running: RunningPassAtK, horizon: int | None = None):
        self._running = running
        self._horizon = horizon  # the samples asked per problem: the likelihood estimate's last k
        self._cached: tuple[tuple, dict[int, float]] = ((), {})

    def describe(self):
        return [GaugeMetricFamily(NAME, HELP, labels=["k", "method"])]

    def _likelihood(self, counts: dict[str, tuple[int, int]]) -> dict[int, float]:
        key = tuple(sorted(counts.values()))
        if key != self._cached[0]:
            n = np.array([nc[0] for nc in counts.values()])
            c = np.array([nc[1] for nc in counts.values()])
            ks = ks_for(self._horizon or int(n.max()))
            try:
                fit = fit_beta_binomial(
                    n, c, scale=False
                )  # at scrape time: the scale test (0.3 s at n = 1000) is the report's
                scores = dict(zip(ks, fit.pass_at(ks).tolist()))
            except Unfittable:
                scores = {}
            self._cached = (key, scores)
        return self._cached[1]

    def collect(self):
        family = GaugeMetricFamily(NAME, HELP, labels=["k", "method"])
        for k, score in self._running.scores().items():
            family.add_metric([str(k), "chen"], score)
        counts = self._running.counts()
        if counts:
            for k, score in self._likelihood(counts).items():
                family.add_metric([str(k), "beta_binomial"], score)
        yield family
