"""engine/tasks/compare.py's stdout rule against the independent reference rules of
tests/helpers/stdout_reference.py, on generated outputs.

Invariants: our comparator agrees with `our_matches` on every pair (the README's rule);
wherever LiveCodeBench's rule passes, ours passes too (our departures only ever accept more);
and with tolerance 0 and one-token-per-line numeric lines, the two rules are the same."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from stdout_reference import lcb_matches, our_matches

from engine.tasks.compare import stdout_matches

WORDS = st.sampled_from(["YES", "no", "a", "x1", "-", "nan", "inf"])
INTS = st.integers(min_value=-(10**12), max_value=10**12).map(str)
FLOATS = st.integers(min_value=-(10**6), max_value=10**6).map(lambda n: f"{n / 1000:.3f}")
TOKEN = st.one_of(WORDS, INTS, FLOATS)
LINE = st.lists(TOKEN, min_size=0, max_size=4)
OUTPUT = st.lists(LINE, min_size=0, max_size=4)


def render(lines: list[list[str]], space: str = " ", end: str = "\n") -> str:
    return end.join(space.join(tokens) for tokens in lines) + end


def variant(token: str, how: int) -> str:
    """The same token written otherwise, or moved by a tolerance-sized step (never near the
    tolerance's edge, where float and decimal arithmetic could round apart)."""
    try:
        value = float(token)
    except ValueError:
        return token.lower() if how == 1 else token
    if how == 1:
        return f"{value:.6f}"  # same number, more digits
    if how == 2:
        return repr(value + 1e-9 * max(1.0, abs(value)))  # well within 1e-6
    if how == 3:
        return repr(value + 1e-4 * max(1.0, abs(value)))  # well beyond 1e-6
    return token


@settings(max_examples=300, deadline=None)
@given(OUTPUT, st.data(), st.sampled_from([" ", "  ", "\t"]), st.sampled_from(["\n", " \n", "\n\n"]))
def test_our_comparator_is_the_documented_rule(expected_lines, data, space, end):
    expected = render(expected_lines)
    changed = [
        [variant(t, data.draw(st.integers(0, 4), label="how")) for t in tokens] for tokens in expected_lines
    ]
    if changed and data.draw(st.booleans(), label="drop or add a line"):
        changed = changed[:-1] if data.draw(st.booleans()) else [*changed, ["0"]]
    actual = render(changed, space, end)
    for tolerance in (0.0, 1e-6):
        ours = stdout_matches(actual, expected, tolerance)
        assert ours == our_matches(actual, expected, tolerance), (actual, expected, tolerance)
        assert ours or not lcb_matches(actual, expected), (actual, expected, tolerance)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(INTS, FLOATS), max_size=5), st.lists(st.one_of(INTS, FLOATS), max_size=5))
def test_numeric_lines_without_tolerance_are_livecodebench(expected, actual):
    a, e = "\n".join(actual), "\n".join(expected)
    assert stdout_matches(a, e, 0.0) == lcb_matches(a, e)
