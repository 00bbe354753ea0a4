"""Which jail gets the next program. The choice is a plain function (`choose`); a `Ticket` is a
program waiting for one (the backend keeps them in a FIFO queue and sends the oldest when a
jail can take it: on every answer, restart or submission).

A jail takes up to its `depth` programs at once (pipelined, see worker.py): the one it runs and
the next ones, waiting in its stdin. The next program goes to the least loaded jail, so that a
program queues behind another only when every jail is busy; among equally loaded jails, to the
one whose current program started last. A jail whose program has run for QUEUE_BEHIND_S already
takes no second one: that program is probably a loop that will meet its time limit (HumanEval
programs take milliseconds), and nothing should wait behind it; the next program then waits for
a jail to come free instead. Stand-ins for jails that could not
be restarted (BrokenWorker: every program an infrastructure error at once) come last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sandbox.limits import Limits
from sandbox.verdicts import Outcome

QUEUE_BEHIND_S = 0.25


class Place(Protocol):
    @property
    def depth(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def head_started(self) -> float: ...  # monotonic start of the program it runs now; 0 if none


P = TypeVar("P", bound=Place)


def choose(candidates: Iterable[P], broken: Iterable[P] = (), now: float = 0.0) -> P | None:
    """The jail for the next program among those taking work, or None if every one is full
    (`now`: monotonic time, to see how long each jail's current program has run)."""
    best: P | None = None
    best_key: tuple[int, float] | None = None
    for worker in candidates:
        if worker.in_flight >= worker.depth:
            continue
        if worker.in_flight and now - worker.head_started > QUEUE_BEHIND_S:
            continue
        key = (worker.in_flight, -worker.head_started)
        if best_key is None or key < best_key:
            best, best_key = worker, key
    if best is None:
        best = next(iter(broken), None)
    return best


@dataclass(slots=True, eq=False)
class Ticket:
    """A program submitted to the backend: queued until a jail takes it, then sent, then answered."""

    program: str
    limits: Limits
    label: str
    data: bytes | None
    done: Callable[[Outcome], object]
    worker: Any = None  # the jail it was sent to (a Worker, or a BrokenWorker stand-in)
    answered: bool = False
    cancelled: bool = False
    last: bool = False  # runs after every other program waiting, on a jail of its own (backend.py)
