"""engine_pass_at_k_estimate{k, method}, on a fresh registry."""

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from metrics.exporter import EngineMetrics
from metrics.running import RunningPassAtK


def test_estimate_metric_carries_chen_and_the_likelihood_fit():
    running = RunningPassAtK()
    registry = CollectorRegistry()
    EngineMetrics(registry, running)
    value = registry.get_sample_value
    assert value("engine_pass_at_k_estimate", {"k": "1", "method": "chen"}) is None  # nothing yet
    for t in range(5):
        running.add(f"T/{t}", False, 10)  # nothing solved: no fit, Chen only
    assert value("engine_pass_at_k_estimate", {"k": "1", "method": "chen"}) == 0.0
    assert value("engine_pass_at_k_estimate", {"k": "1", "method": "beta_binomial"}) is None
    rng = np.random.default_rng(0)
    for t in range(40):
        passes = int(rng.binomial(20, rng.beta(0.5, 2.0)))
        running.add(f"U/{t}", True, passes)
        running.add(f"U/{t}", False, 20 - passes)
    chen = value("engine_pass_at_k_estimate", {"k": "10", "method": "chen"})
    assert chen == value("engine_pass_at_k", {"k": "10"})
    assert value("engine_pass_at_k_estimate", {"k": "10", "method": "beta_binomial"}) == pytest.approx(
        chen, abs=0.1
    )
    running.add("U/0", True)  # counts changed: the fit is redone
    assert value("engine_pass_at_k_estimate", {"k": "1", "method": "beta_binomial"}) is not None
