"""EvalPlus' special oracles for MBPP+ `surface_Area` (Mbpp/581) and `digit_distance_nums`
(Mbpp/558), as evalplus/eval/__init__.py applies them: `exact_match or <oracle>`, and when that
is false the usual atol rule still decides (the oracle says nothing: None).

Invariant: for any arguments, the oracle accepts exactly the expected value and the oracle's own
answer (within atol for the area), says nothing otherwise, and never raises; only MBPP problems
of that name have it."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from engine.records import Problem
from engine.tasks.evalplus import oracle


def problem(task_id: str, name: str) -> Problem:
    return Problem(task_id, "", "evalplus", {"entry_point": name})


def evalplus_surface_area(base_edge, height):  # evalplus/eval/_special_oracle.py, as published
    slant_height = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 4 * (base_edge * slant_height) / 2)


def evalplus_digit_distance(num1, num2):
    a, b = str(num1), str(num2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width)))


SURFACE, DIGITS = (
    oracle(problem("Mbpp/581", "surface_Area")),
    oracle(problem("Mbpp/558", "digit_distance_nums")),
)
numbers = st.integers(0, 10**6) | st.floats(0, 1e6, allow_nan=False)


def test_only_mbpp_problems_of_that_name_have_them():
    assert SURFACE is not None and DIGITS is not None
    assert oracle(problem("HumanEval/1", "surface_Area")) is None
    assert oracle(problem("Mbpp/1", "other")) is None


@given(
    base=numbers,
    height=numbers,
    exp=st.integers(0, 10**12),
    off=st.integers(-3, 3),
    atol=st.sampled_from([0, 1, 2]),
)
def test_surface_area(base, height, exp, off, atol):
    want = evalplus_surface_area(base, height)
    assert SURFACE(exp, exp, [base, height], atol) is True
    assert SURFACE(want + off, exp, [base, height], atol) is (
        True if abs(off) <= atol or want + off == exp else None
    )


@given(a=st.integers(0, 10**9), b=st.integers(0, 10**9), exp=st.integers(0, 100), off=st.integers(1, 5))
def test_digit_distance(a, b, exp, off):
    want = evalplus_digit_distance(a, b)
    assert DIGITS(want, exp, [a, b], 0) is True and DIGITS(exp, exp, [a, b], 0) is True
    assert DIGITS(want + off, exp, [a, b], 0) is (True if want + off == exp else None)


@given(args=st.lists(st.none() | st.text(max_size=3) | st.integers(-5, 5) | st.booleans(), max_size=3))
def test_bad_arguments_say_nothing_and_never_raise(args):
    for special in (SURFACE, DIGITS):
        assert special("x", 1, args, 0) is None
