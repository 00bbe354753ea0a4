"""The engine's exact mirror of the problem data one jail holds (server.py's PROTOCOL: "Problem
data"): which blobs it has, least recently used first, within a byte budget.

The server keeps exactly what the engine tells it to: a blob it is sent, until a request evicts
it. So the mirror is the truth as long as it changes in the order the requests are written,
which `admit` does: call it when writing a request, never ahead.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

DEFAULT_BUDGET_BYTES = 32 * 1024 * 1024


def digest_of(data: bytes) -> str:
    """The blob's name on the wire (the server checks the bytes against it)."""
    return _digest(data)


_DIGESTS: OrderedDict[bytes, str] = OrderedDict()


def _digest(data: bytes) -> str:
    """SHA-256, remembered for the last few blobs: every sample of a problem sends the same one
    (a bytes object caches its hash, so the look-up costs one hash per object, not per call)."""
    known = _DIGESTS.get(data)
    if known is None:
        known = _DIGESTS[data] = hashlib.sha256(data).hexdigest()
        if len(_DIGESTS) > 64:
            _DIGESTS.popitem(last=False)
    else:
        _DIGESTS.move_to_end(data)
    return known


@dataclass(frozen=True, slots=True)
class Admission:
    """What a request carries for its blob: whether the bytes follow, and what to evict first."""

    send: bool
    evict: tuple[str, ...] = ()


@dataclass(slots=True)
class HeldBlobs:
    """The blobs one jail holds, by digest, least recently used first. The blob a program needs
    is always kept for it, even alone past the budget: it must run with its own input."""

    budget: int = DEFAULT_BUDGET_BYTES
    sizes: OrderedDict[str, int] = field(default_factory=OrderedDict)

    @property
    def held_bytes(self) -> int:
        return sum(self.sizes.values())

    def admit(self, digest: str, size: int) -> Admission:
        """The jail is about to run a program with this blob: note its use, and say what to send."""
        if digest in self.sizes:
            self.sizes.move_to_end(digest)
            return Admission(send=False)
        evict = []
        total = self.held_bytes
        while self.sizes and total + size > self.budget:
            old, old_size = self.sizes.popitem(last=False)
            evict.append(old)
            total -= old_size
        self.sizes[digest] = size
        return Admission(send=True, evict=tuple(evict))
