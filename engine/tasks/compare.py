"""The comparison rules of the output-comparing kinds: pure functions, run in the engine, never in
the candidate's process (its values reach here as type-tagged data, engine/tasks/driver.py).

stdout (stdin/stdout kinds), after LiveCodeBench's `grade_stdio`: whitespace at both ends of the
output and of each line does not count; then the lines must pair up one to one, and two lines
match when they are equal, or when their whitespace-separated tokens pair up and each pair is
equal as text or as numbers. Numbers: two integers must be equal; otherwise equal as decimals
(LiveCodeBench's rule: "1.0" matches "1.00") or within `tolerance`, absolute or relative
(|a - b| <= tolerance * max(1, |b|)). tolerance=0 is LiveCodeBench's exact rule.

Return values (call-based and EvalPlus-style), after EvalPlus's `unsafe_execute`: Python's
`==` on the decoded values (plain builtins only, so `==` means what it says); failing that, when
the problem has an `atol` or the expected value is a float or a flat list/tuple of floats (then
atol 1e-6), the types must be the same, lengths too, and every number within
atol + 1e-7 * |expected| (numpy.allclose as EvalPlus calls it). NaN matches nothing there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.tasks.driver import canonical_stdout

FLOAT_ATOL = 1e-6  # EvalPlus: the atol of a float result when the problem sets none
RTOL = 1e-7  # EvalPlus: numpy.allclose's rtol, set explicitly
MAX_DEPTH = 100  # nesting of a decoded value (the driver refuses deeper ones)


class Malformed(ValueError):
    """Tagged data that is not a value the driver can have written."""


def stdout_matches(actual: str, expected: str, tolerance: float = 0.0) -> bool:
    got, want = canonical_stdout(actual).split("\n"), canonical_stdout(expected).split("\n")
    return len(got) == len(want) and all(_line_matches(a, b, tolerance) for a, b in zip(got, want))


def _line_matches(actual: str, expected: str, tolerance: float) -> bool:
    if actual == expected:
        return True
    got, want = actual.split(), expected.split()
    return len(got) == len(want) and all(_token_matches(a, b, tolerance) for a, b in zip(got, want))


def _token_matches(actual: str, expected: str, tolerance: float) -> bool:
    if actual == expected:
        return True
    a, b = _decimal(actual), _decimal(expected)
    if a is None or b is None:
        return False
    if a == b:
        return True
    if _is_integer_text(actual) and _is_integer_text(expected):
        return False
    return tolerance > 0 and abs(float(a) - float(b)) <= tolerance * max(1.0, abs(float(b)))


def _decimal(token: str) -> Decimal | None:
    try:
        value = Decimal(token)
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _is_integer_text(token: str) -> bool:
    return token.lstrip("+-").isdigit()


# Type-tagged values: the driver's `encode`, undone.
_SEQUENCES: dict[str, Callable[[list[Any]], Any]] = {"l": list, "t": tuple, "e": set, "z": frozenset}


def decode(data: Any, depth: int = 0) -> Any:
    """The value tagged data stands for; Malformed if it is not the driver's encoding."""
    if depth > MAX_DEPTH or not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise Malformed("not a tagged value")
    tag, body = data[0], data[1:]
    try:
        if tag == "N" and not body:
            return None
        (item,) = body
        return _decode_tagged(tag, item, depth)
    except (ValueError, TypeError) as exc:  # a bad int, an unhashable key, a wrong arity
        raise Malformed(str(exc)) from exc


def _decode_tagged(tag: str, item: Any, depth: int) -> Any:
    if tag == "b" and isinstance(item, bool):
        return item
    if tag == "s" and isinstance(item, str):
        return item
    if tag == "i" and isinstance(item, str):
        return int(item, 16)
    if tag == "f" and isinstance(item, str):
        return float(item)
    if tag in _SEQUENCES and isinstance(item, list):
        return _SEQUENCES[tag]([decode(x, depth + 1) for x in item])
    if tag == "d" and isinstance(item, list):
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in item}
    raise Malformed(f"unknown tag {tag!r}")


def values_match(actual: Any, expected: Any, atol: float = 0.0) -> bool:
    """EvalPlus's rule (module docstring), on decoded values."""
    try:
        if actual == expected:
            return True
    except RecursionError:
        return False
    if atol == 0 and _is_floats(expected):
        atol = FLOAT_ATOL
    return atol != 0 and _all_close(actual, expected, atol)


def _is_floats(value: Any) -> bool:
    if isinstance(value, float):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(x, float) for x in value)


def _all_close(actual: Any, expected: Any, atol: float) -> bool:
    """EvalPlus asserts the same type (and length) at the top, then numpy.allclose, which sees
    nested lists and tuples alike as arrays."""
    if type(actual) is not type(expected):
        return False
    return _close(actual, expected, atol)


def _close(actual: Any, expected: Any, atol: float) -> bool:
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(actual) == len(expected)
            and all(_close(a, b, atol) for a, b in zip(actual, expected))
        )
    if not all(isinstance(x, (int, float)) for x in (actual, expected)):
        return False
    try:
        a, b = float(actual), float(expected)
    except OverflowError:  # an int beyond floats: only == could have matched it
        return False
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + RTOL * abs(b)
