from math import comb

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.passk import ks_for, mean_pass_at_k, pass_at_k, pass_at_k_table
from metrics.running import RunningPassAtK


@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_product_form_equals_the_binomial_definition(nck):
    n, c, k = nck
    exact = 1 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_large_n_stays_finite_and_in_range():
    assert pass_at_k(10_000, 1, 1) == pytest.approx(1e-4)
    assert pass_at_k(10_000, 1, 5_000) == pytest.approx(0.5)
    assert 0 < pass_at_k(10_000, 3, 100) < 1


def test_known_values():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 5, 1) == pytest.approx(0.5)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)


def test_mean_counts_only_problems_with_at_least_k_samples():
    assert mean_pass_at_k([10, 2], [5, 2], 5) == pytest.approx(pass_at_k(10, 5, 5))
    assert mean_pass_at_k([2, 3], [1, 1], 5) is None


def test_ks_include_coverage():
    assert ks_for(100) == [1, 2, 5, 10, 20, 50, 100]
    assert ks_for(8) == [1, 2, 5, 8]


def test_table_and_running_agree():
    running = RunningPassAtK()
    rng = np.random.default_rng(0)
    counts = {}
    for task in range(5):
        outcomes = rng.random(20) < task / 5
        for ok in outcomes:
            running.add(f"t{task}", bool(ok))
        counts[f"t{task}"] = (20, int(outcomes.sum()))
    assert running.counts() == counts
    assert running.scores() == pytest.approx(pass_at_k_table(counts))
