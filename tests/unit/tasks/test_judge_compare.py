"""The comparison rules of the output-comparing kinds (engine/tasks/compare.py) and the value
encoding they read (engine/tasks/driver.py): pure functions, no jail."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.tasks.compare import Malformed, decode, stdout_matches, values_match
from engine.tasks.driver import Unserialisable, canonical_json, canonical_stdout, encode

TOKEN = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=8)
LINES = st.lists(st.lists(TOKEN, max_size=5).map(" ".join), max_size=20)
BLANK = st.text(" \t\r", max_size=3)


# -- stdout -----------------------------------------------------------------------------------


@given(LINES, BLANK, BLANK, st.data())
def test_stdout_whitespace_at_the_ends_of_lines_and_output_does_not_count(
    lines: list[str], head: str, tail: str, data: st.DataObject
) -> None:
    """Invariant: padding any line, or the whole output, with blanks never changes the verdict."""
    expected = "\n".join(lines)
    padded = [data.draw(BLANK) + line + data.draw(BLANK) for line in lines]
    actual = head + "\n".join(padded) + tail + "\n"
    assert stdout_matches(actual, expected)
    assert stdout_matches(expected, actual)
    assert canonical_stdout(actual) == canonical_stdout(expected)


@given(LINES, TOKEN)
def test_stdout_an_extra_line_fails(lines: list[str], extra: str) -> None:
    """Invariant: outputs with different numbers of non-blank-ended lines never match."""
    expected = "\n".join(lines)
    assert not stdout_matches(expected + "\n" + extra, expected) or not canonical_stdout(expected)


@given(LINES, st.integers(min_value=0, max_value=19), TOKEN)
def test_stdout_one_changed_token_fails(lines: list[str], where: int, other: str) -> None:
    """Invariant: a token replaced by a different non-numeric one is a wrong answer, wherever it is."""
    if not lines or not lines[where % len(lines)].split():
        return
    row = lines[where % len(lines)].split()
    if row[-1] == other or _number(row[-1]) or _number(other):
        return
    changed = lines[: where % len(lines)] + [" ".join(row[:-1] + [other])] + lines[where % len(lines) + 1 :]
    assert not stdout_matches("\n".join(changed), "\n".join(lines))


def _number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "actual, expected, tolerance, same",
    [
        ("", "", 0.0, True),  # empty output, empty answer
        ("\n\n  \n", "", 0.0, True),
        ("", "0", 0.0, False),
        ("0", "", 0.0, False),
        ("7", "7", 0.0, True),  # one token
        ("7", "8", 0.0, False),
        ("1.0", "1.00", 0.0, True),  # LiveCodeBench: equal as decimals
        ("2.5", "2.500000", 0.0, True),
        ("0.3333333", "0.333333", 0.0, False),  # exact rule: different decimals
        ("0.3333333", "0.333333", 1e-6, True),  # within the tolerance
        ("0.33", "0.333333", 1e-6, False),
        ("1000001", "1000000", 1e-3, False),  # integers never get a tolerance
        ("1000000.5", "1000000", 1e-6, True),  # relative
        ("1e3", "1000", 0.0, True),
        ("nan", "nan", 0.0, True),  # equal as text
        ("nan", "0", 1.0, False),
        ("inf", "inf", 0.0, True),
        ("a b", "a  b", 0.0, True),  # token-wise within a line
        ("a\nb", "a b", 0.0, False),  # but lines pair up one to one
        ("YES", "yes", 0.0, False),
    ],
)
def test_stdout_table(actual: str, expected: str, tolerance: float, same: bool) -> None:
    assert stdout_matches(actual, expected, tolerance) is same


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=0, max_value=99_999))
def test_stdout_huge_output_one_difference_anywhere(where: int) -> None:
    """100,000 lines: equal matches; one token changed at any position (the last too) does not."""
    lines = [str(i) for i in range(100_000)]
    expected = "\n".join(lines)
    assert stdout_matches(expected + "\n", expected, 1e-6)
    lines[where] = str(where + 1)
    assert not stdout_matches("\n".join(lines), expected, 1e-6)


# -- values -----------------------------------------------------------------------------------

HASHABLE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
VALUES = st.recursive(
    HASHABLE,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner)
        | st.sets(HASHABLE, max_size=4)
        | st.dictionaries(HASHABLE, inner, max_size=4)
    ),
    max_leaves=20,
)


def same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_types(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return all(same_types(a[k], b[k]) for k in a)
    return True


@given(VALUES)
def test_encoding_round_trips_exactly(value: Any) -> None:
    """Invariant: decode(encode(v)) == v, with the same type at every level (1 is not 1.0, True,
    or a one-element tuple), through the JSON text the report carries."""
    back = decode(json.loads(canonical_json(encode(value))))
    assert back == value and same_types(back, value)
    assert values_match(back, value)


@given(st.sets(st.integers(), max_size=8), st.randoms())
def test_encoding_is_canonical_for_sets_and_dicts(items: set[int], rnd: Any) -> None:
    """Equal sets and dicts built in any order encode alike (their digests are compared)."""
    order = list(items)
    rnd.shuffle(order)
    assert canonical_json(encode(set(order))) == canonical_json(encode(items))
    assert canonical_json(encode({k: 1 for k in order})) == canonical_json(encode({k: 1 for k in items}))


class Anything:
    def __eq__(self, other: object) -> bool:
        return True


class AlwaysInt(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


def test_encoding_refuses_what_is_not_a_plain_builtin() -> None:
    loop: list[Any] = []
    loop.append(loop)
    deep: list[Any] = []
    for _ in range(200):
        deep = [deep]
    for value in (
        Anything(),
        AlwaysInt(3),
        [1, Anything()],
        {"k": AlwaysInt(1)},
        loop,
        deep,
        1j,
        b"x",
        range(3),
    ):
        with pytest.raises((Unserialisable, RecursionError)):
            encode(value)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=3), lambda c: st.lists(c, max_size=3)
    )
)
def test_decode_of_any_json_is_a_value_or_malformed(data: Any) -> None:
    """Whatever a (hostile) runner writes: a value, or Malformed; never another exception."""
    try:
        decode(data)
    except Malformed:
        pass


def test_decode_bad_dict_key_is_malformed() -> None:
    with pytest.raises(Malformed):
        decode(["d", [[["l", []], ["N"]]]])  # a list as a key


@pytest.mark.parametrize(
    "actual, expected, atol, same",
    [
        (1, 1.0, 0, True),  # Python's ==, as EvalPlus uses it
        (True, 1, 0, True),
        ([1, 2], (1, 2), 0, False),
        (0.1 + 0.2, 0.3, 0, True),  # float result: atol 1e-6
        (0.3 + 2e-6, 0.3, 0, False),
        ([0.1 + 0.2, 1.0], [0.3, 1.0], 0, True),
        ((0.1 + 0.2,), [0.3], 0, False),  # atol needs the same type
        ([0.30001], [0.3], 1e-4, True),
        ([0.3, 0.4], [0.3], 1e-4, False),  # and the same length
        (float("nan"), float("nan"), 0, False),
        (float("inf"), float("inf"), 0, True),
        (float("inf"), 1e308, 1e-6, False),
        (10**400, 10**400 + 1, 1e-6, False),  # beyond floats: no crash, not close
        (2, 3, 1.5, True),  # atol applies to ints too (numpy.allclose)
        ("a", "a ", 1e-6, False),
        ([[0.1 + 0.2]], [[0.3]], 1e-6, True),  # nested, as numpy sees it
        ({"a": 0.1 + 0.2}, {"a": 0.3}, 1e-6, False),  # dicts: == only
    ],
)
def test_values_table(actual: Any, expected: Any, atol: float, same: bool) -> None:
    assert values_match(actual, expected, atol) is same


@given(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.floats(min_value=0, max_value=1),
)
def test_values_within_atol(expected: float, fraction: float) -> None:
    """Invariant: a float within atol of the expected one matches; one beyond atol + rtol does not."""
    atol = 1e-3
    assert values_match(expected + fraction * atol * 0.99, expected, atol)
    beyond = atol + 1e-7 * abs(expected) + 1e-3
    assert not values_match(expected + beyond, expected, atol) or math.isclose(beyond, 0)
