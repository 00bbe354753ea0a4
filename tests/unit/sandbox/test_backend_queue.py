"""ForkServerBackend's queue (submit, dispatch, answers, cancel) over fake jails: no processes.

Invariant, under any schedule of submissions, answers (in each jail's order) and cancellations:
every ticket not cancelled gets exactly one answer, the one its jail gave; programs leave the
queue oldest first; no jail holds more than its depth; a cancelled ticket still queued is never
sent, and cancelling one that runs kills its jail."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.forkserver.backend import ForkServerBackend
from sandbox.limits import Limits
from sandbox.verdicts import Outcome, Verdict


class FakeLauncher:
    name = "fake"


class FakeJail:
    """What the backend reads of a Worker, and a submit() the test answers by hand."""

    reserved = False
    ready = True
    healthy = True
    head_started = 0.0

    def __init__(self, depth: int):
        self.depth = depth
        self.served = 0
        self.busy_with: deque = deque()  # (program, done), in the order sent
        self.killed = False

    @property
    def in_flight(self) -> int:
        return len(self.busy_with)

    @property
    def busy(self) -> bool:
        return bool(self.busy_with)

    def submit(self, program, limits, data, done) -> None:
        assert len(self.busy_with) < self.depth, "a jail got more programs than its depth"
        self.served += 1
        self.busy_with.append((program, done))

    def answer(self) -> str:
        program, done = self.busy_with.popleft()
        done(Outcome(Verdict.passed, f"ran {program}", 0.0, "fake", Limits(), ""), True)
        return program

    def kill(self, reason) -> None:
        self.killed = True


steps = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(1, 3)),
        st.tuples(st.just("answer"), st.integers(0, 3)),
        st.tuples(st.just("cancel"), st.integers(0, 40)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(depths=st.lists(st.integers(1, 3), min_size=1, max_size=4), schedule=steps)
def test_every_ticket_is_answered_once_in_order_and_cancelled_ones_never_run(depths, schedule):
    backend = ForkServerBackend(FakeLauncher())
    jails = [FakeJail(d) for d in depths]
    backend._workers = set(jails)
    answers: dict[str, list[str]] = {}
    tickets, sent_order, submitted = [], [], 0

    def record(name):
        return lambda outcome: answers.setdefault(name, []).append(outcome.detail)

    def drain_all_answers():
        while any(j.busy_with for j in jails):
            for jail in jails:
                if jail.busy_with:
                    sent_order.append(jail.answer())

    for action, n in schedule + [("drain", 0)]:
        if action == "submit":
            for _ in range(n):
                name = f"p{submitted}"
                submitted += 1
                tickets.append(backend.submit(name, Limits(), done=record(name)))
        elif action == "answer":
            busy = [j for j in jails if j.busy_with]
            if busy:
                sent_order.append(busy[n % len(busy)].answer())
        elif action == "cancel" and tickets:
            ticket = tickets[n % len(tickets)]
            was_running = ticket.worker is not None and not ticket.answered
            backend.cancel(ticket)
            if was_running:
                assert ticket.worker.killed
        else:
            drain_all_answers()
            while backend._queued[False]:  # cancelled tickets left at the head
                backend._dispatch(False)
                drain_all_answers()

    for ticket in tickets:
        name = ticket.program
        if ticket.cancelled:
            assert answers.get(name, []) == [] or ticket.answered
            if ticket.worker is None:
                assert name not in sent_order, "a cancelled, queued program was sent"
        else:
            assert answers[name] == [f"ran {name}"], "not answered exactly once"
    sent_numbers = [int(p[1:]) for p in sent_order]
    assert sent_numbers == sorted(sent_numbers) or len(jails) > 1 or max(depths) > 1
    started = [int(t.program[1:]) for t in tickets if t.worker is not None]
    assert started == sorted(started), "the queue is not first in, first out"


def test_a_cancelled_ticket_answered_later_calls_nobody():
    backend = ForkServerBackend(FakeLauncher())
    jail = FakeJail(1)
    backend._workers = {jail}
    got: list[str] = []
    ticket = backend.submit("p", Limits(), done=lambda o: got.append(o.detail))
    backend.cancel(ticket)
    assert jail.killed
    jail.answer()  # the killed jail's reader answers it anyway
    assert got == []
