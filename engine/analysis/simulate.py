"""The parametric bootstrap's draws: the counts a beta-binomial fit would produce when sampled
under the run's policy.

Under `uniform` every problem keeps its sample count. Under `until-solved` the count itself is
random (a problem stops at its m-th pass, or at the cap), so holding it at the observed value
would understate the spread: each replicate draws every problem's samples one by one until
its m-th pass or the cap. (The runner stops at the end of the request holding the m-th pass,
a few samples later at most; the stopping rule is the same.) `hardest-first` gives every
problem its full count once the run is done; a run stopped part-way keeps its observed counts.
"""

from __future__ import annotations

import numpy as np

from engine.analysis.fits import Fit

_CHUNK = 64  # samples drawn at a time per problem still open: memory stays problems x 64


def draw_rates(fit: Fit, problems: int, rng: np.random.Generator) -> np.ndarray:
    """Per-problem success rates from the fit: 0 (the point mass) or scale * Beta(alpha, beta)."""
    p = fit.params.get("scale", 1.0) * rng.beta(fit.params["alpha"], fit.params["beta"], size=problems)
    p[rng.random(problems) < fit.params["zero_mass"]] = 0.0
    return p


def until_solved(
    p: np.ndarray, cap: int, stop_after: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(n, c) of problems with rates p, each sampled until its stop_after-th pass or cap samples."""
    n = np.zeros(len(p), dtype=int)
    c = np.zeros(len(p), dtype=int)
    open_ = np.arange(len(p))
    while len(open_):
        left = cap - n[open_]
        size = min(_CHUNK, int(left.max()))
        # samples beyond a problem's cap are not taken
        passed = (rng.random((len(open_), size)) < p[open_, None]) & (
            np.arange(size)[None, :] < left[:, None]
        )
        passes = c[open_, None] + np.cumsum(passed, axis=1)
        reached = passes >= stop_after
        taken = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, np.minimum(size, left))
        n[open_] += taken
        c[open_] = passes[np.arange(len(open_)), taken - 1]
        open_ = open_[(c[open_] < stop_after) & (n[open_] < cap)]
    return n, c


def policy_resimulated(policy: dict, cap: int | None) -> bool:
    """Whether replicates redraw the sample counts (until-solved with a known cap)."""
    return policy.get("name") == "until-solved" and bool(cap)


def counts_under_policy(fit: Fit, n: np.ndarray, policy: dict, cap: int | None, rng: np.random.Generator):
    """One parametric-bootstrap replicate: (n, c) per problem as the run's policy would draw them."""
    p = draw_rates(fit, len(n), rng)
    if cap is not None and policy_resimulated(policy, cap):
        return until_solved(p, cap, int(policy.get("stop_after") or 1), rng)
    return n, rng.binomial(n, p)
