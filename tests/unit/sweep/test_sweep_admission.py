"""Admission, the only owner of queue slots: alone, under any sequence of calls, and inside a
sweep under any fault schedule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sweep_fakes import FAULTS, FakeFleet, Fault, MemoryStore, ScriptedClient, make_sweep, run

from engine.sweep.admission import Admission, AdmissionError

OPS = st.lists(
    st.tuples(st.sampled_from(["admit", "hold", "release"]), st.integers(-1, 9)),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 8), ops=OPS)
def test_slots_never_leak_or_go_negative_under_any_sequence(capacity, ops):
    """Invariant, after every call: held == slots taken - slots given back, 0 <= held; a request
    is admitted exactly when it fits (held + n <= capacity); a misuse (a count below 1, giving
    back more than is held, admitting what does not fit) raises AdmissionError and changes
    nothing. Includes the empty sequence, one call, n == capacity, and n beyond it."""
    woken = []
    admission = Admission(capacity, on_release=lambda: woken.append(1))
    expected = wakeups = 0
    for op, n in ops:
        fits = expected + n <= capacity
        assert admission.can_admit(n) == fits
        if op == "release" and n == 0:
            misuse = False  # giving back nothing is allowed (a request that owed nothing)
        else:
            misuse = n < 1 or (op == "admit" and not fits) or (op == "release" and n > expected)
        if misuse:
            with pytest.raises(AdmissionError):
                getattr(admission, op)(n)
        else:
            getattr(admission, op)(n)
            expected += -n if op == "release" else n
            wakeups += op == "release" and n > 0
        assert admission.held == expected >= 0
    assert len(woken) == wakeups  # every slot given back wakes the request loop


def test_the_ends_two_at_once_and_an_empty_queue():
    """Invariant: the last slot is admitted, one more is not; two requests that each fit alone
    but not together are admitted one at a time; a queue of no slots cannot exist."""
    a = Admission(4)
    a.admit(2)
    assert a.can_admit(2) and not a.can_admit(3)
    a.admit(2)
    assert a.held == a.capacity and not a.can_admit(1)
    with pytest.raises(AdmissionError):
        a.admit(1)
    a.release(4)
    assert a.held == 0
    with pytest.raises(AdmissionError):
        a.release(1)
    with pytest.raises(AdmissionError):
        Admission(0)
    a.hold(9)  # unverified samples read back on resume are never refused
    assert a.held == 9 and not a.can_admit(1)


schedules = st.dictionaries(
    st.integers(0, 20), st.builds(Fault, st.sampled_from(FAULTS[:4]), st.integers(0, 4)), max_size=6
)


@settings(max_examples=40, deadline=None)
@given(
    faults=schedules,
    queue=st.integers(4, 9),
    samples=st.integers(0, 9),
    problem_count=st.integers(1, 3),
)
def test_a_sweep_gives_every_slot_back_under_any_fault_schedule(faults, queue, samples, problem_count):
    """Invariant: whatever fails when (broken streams after k choices, refused requests, servers
    that ignore n, connect failures; none, one, several), a sweep that ends holds no slot, and
    never held more than its queue (Admission would raise, and the sweep with it). Includes no
    samples at all, one, and a queue no larger than one request."""
    store = MemoryStore()
    sweep = make_sweep(
        problem_count=problem_count,
        samples=samples,
        client=ScriptedClient(faults),
        store=store,
        fleet=FakeFleet(servers=3),
        queue_size=queue,
    )
    run(sweep)
    assert sweep.admission.held == 0
    assert sweep.snapshot().queue_held == 0 and sweep.snapshot().queue_depth == 0
