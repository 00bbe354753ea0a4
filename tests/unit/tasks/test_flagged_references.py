"""The problems whose reference fails its own tests, as the run's summary and `engine status`
name them. Invariant: every flagged problem is named once (prepare's and preflight's merged,
preflight's reason kept: it says how the reference failed); the line names up to ten and counts
the rest, so a dataset with thousands of them stays one line."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.summary import flagged_line
from engine.tasks.hooks import flagged_references

ids = st.lists(st.sampled_from([f"p{i}" for i in range(30)]), unique=True, max_size=30)


@given(prepared=ids, preflight=ids)
def test_merged_once_each_preflight_reason_kept(prepared, preflight):
    reasons = {t: f"failed: test {i}" for i, t in enumerate(preflight)}
    merged = flagged_references(prepared, reasons)
    assert set(merged) == set(prepared) | set(preflight)
    assert list(merged) == sorted(merged)
    for task, why in merged.items():
        assert why == reasons.get(task, "the reference fails some of its own tests")


@given(count=st.integers(1, 30))
def test_the_line_names_ten_and_counts_the_rest(count):
    flagged = {f"p{i:02d}": "failed: x" for i in range(count)}
    line = flagged_line(flagged)
    assert line.startswith(f"flagged: {count} problems") and "\n" not in line
    assert sum(f"p{i:02d} (" in line for i in range(count)) == min(count, 10)
    assert (f"and {count - 10} more" in line) == (count > 10)


def test_nothing_flagged():
    assert flagged_references([], {}) == {}
