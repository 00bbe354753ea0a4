"""The engine's mirror of a jail's problem data (sandbox/forkserver/blobs.py)."""

from hypothesis import given
from hypothesis import strategies as st

from sandbox.forkserver.blobs import HeldBlobs


@given(
    budget=st.integers(0, 100),
    uses=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 120)), max_size=40),
)
def test_the_mirror_sends_each_blob_once_while_held_and_stays_in_budget(budget, uses):
    """Invariant, over any sequence of uses (sizes from empty to past the budget): a blob is
    sent iff it is not held; evictions name only held blobs; after each use the blob used is
    held, and what is held fits the budget unless that one blob alone exceeds it."""
    held = HeldBlobs(budget)
    sizes: dict[str, int] = {}
    for name, size in uses:
        digest = f"d{name}"
        size = sizes.setdefault(digest, size)  # a digest names one content: one size
        before = dict(held.sizes)
        admission = held.admit(digest, size)
        assert admission.send == (digest not in before)
        assert set(admission.evict) <= set(before) and digest not in admission.evict
        assert digest in held.sizes and list(held.sizes)[-1] == digest  # the most recent
        assert held.held_bytes <= budget or list(held.sizes) == [digest]
