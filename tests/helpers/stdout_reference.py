"""LiveCodeBench's stdout rule (`grade_stdio`), written independently of engine/tasks/compare.py,
and our rule as its documented departures from it (README, "Verdict fidelity"): a float
tolerance (two integers as written stay exact), and tokens compared one by one, each equal as
text or as a number."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def lcb_matches(output: str, expected: str) -> bool:
    """LiveCodeBench: stripped lines pair up; a line matches when equal, or when both convert to
    the same list of decimals."""
    got, want = lines(output), lines(expected)
    return len(got) == len(want) and all(g == w or same_decimals(g, w) for g, w in zip(got, want))


def same_decimals(got: str, want: str) -> bool:
    try:
        g, w = [Decimal(t) for t in got.split()], [Decimal(t) for t in want.split()]
    except InvalidOperation:
        return False
    return g == w


def our_matches(output: str, expected: str, tolerance: float) -> bool:
    got, want = lines(output), lines(expected)
    return len(got) == len(want) and all(
        tokens_match(g.split(), w.split(), tolerance) for g, w in zip(got, want)
    )


def tokens_match(got: list[str], want: list[str], tolerance: float) -> bool:
    return len(got) == len(want) and all(a == b or numbers_match(a, b, tolerance) for a, b in zip(got, want))


def numbers_match(a: str, b: str, tolerance: float) -> bool:
    try:
        x, y = Decimal(a), Decimal(b)
    except InvalidOperation:
        return False
    if not (x.is_finite() and y.is_finite()):
        return False
    if x == y:
        return True
    if tolerance == 0 or all(t.lstrip("+-").isdigit() for t in (a, b)):
        return False  # two integers (as written) are always exact
    return abs(x - y) <= Decimal(tolerance) * max(Decimal(1), abs(y))
