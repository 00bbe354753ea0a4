"""The unbiased pass@k estimator of Chen et al. 2021 (the Codex paper).

For a problem with n samples of which c passed, pass@k = 1 - C(n-c, k) / C(n, k). The binomials
overflow floats long before n = 1000, so the ratio is computed as a product of terms in (0, 1],
whichever of its two forms is shorter:

    C(n-c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i)        c terms (the Codex paper's)
                        = prod_{j = 0}^{k-1} (n-c-j) / (n-j)      k terms

so it stays in [0, 1] and costs min(c, k) multiplications. Plain Python, no numpy: the summary of
every command needs it, and numpy's import (and its BLAS threads) would cost `engine verify`'s
start-up more than all the arithmetic. The score is the mean over problems with at least k
samples. Coverage is pass@n; fail@k = 1 - pass@k.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

STANDARD_KS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k of one problem; needs n >= k."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    if c <= k:
        none_pass = math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
    else:
        none_pass = math.prod((n - c - j) / (n - j) for j in range(k))
    return 1.0 - none_pass


def mean_pass_at_k(ns: Iterable[int], cs: Iterable[int], k: int) -> float | None:
    """Mean pass@k over the problems that have at least k samples; None if there are none."""
    scores = [pass_at_k(n, c, k) for n, c in zip(ns, cs) if n >= k]
    return math.fsum(scores) / len(scores) if scores else None


def ks_for(max_n: int) -> list[int]:
    """The usual k values up to max_n, always including max_n itself (coverage)."""
    ks = [k for k in STANDARD_KS if k <= max_n]
    if max_n >= 1 and (not ks or ks[-1] != max_n):
        ks.append(max_n)
    return ks


def pass_at_k_table(counts: dict[str, tuple[int, int]], ks: Iterable[int] | None = None) -> dict[int, float]:
    """{k: mean pass@k} for per-problem (n, c) counts, over problems with n >= k."""
    if not counts:
        return {}
    ns = [n for n, _ in counts.values()]
    cs = [c for _, c in counts.values()]
    table = {}
    for k in ks if ks is not None else ks_for(min(ns)):
        score = mean_pass_at_k(ns, cs, k)
        if score is not None:
            table[k] = score
    return table
