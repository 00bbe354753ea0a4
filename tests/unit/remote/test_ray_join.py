"""Joining the Ray cluster: Ray Client's "Initialization failure from server" (its per-connection
server did not start) is tried again up to JOIN_ATTEMPTS times; any other failure, or the last
attempt's, is one line of bad input. Ray's own join is replaced here by a scripted one: what is
tested is how connect() answers each outcome, for every position of the first success."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from engine.errors import InputError
from engine.remote import ray_backend
from engine.remote.ray_backend import JOIN_ATTEMPTS, NodeMetrics, RayBackend

NODE = {"NodeID": "ab" * 28, "NodeName": "head", "Alive": True, "Resources": {"CPU": 2.0}}
ABORTED = ConnectionAbortedError("Initialization failure from server:\nTraceback ...")


def scripted_join(monkeypatch, failures: list[Exception]) -> list[str]:
    """ray.init raises each of `failures` in turn, then joins; returns the addresses it was given."""
    calls: list[str] = []

    def init(address, **_):
        calls.append(address)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # "auto" then names no address to probe first
    monkeypatch.setattr(ray_backend.ray, "init", init)
    monkeypatch.setattr(ray_backend.ray, "nodes", lambda: [NODE])
    return calls


def backend() -> RayBackend:
    return RayBackend("auto", sandbox="nsjail", node_workers=None, metrics=NodeMetrics(CollectorRegistry()))


@pytest.mark.parametrize("failed", range(JOIN_ATTEMPTS))
def test_a_client_server_that_did_not_start_is_tried_again(monkeypatch, caplog, failed):
    calls = scripted_join(monkeypatch, [ABORTED] * failed)
    with caplog.at_level(logging.WARNING, logger=ray_backend.__name__):
        assert backend().connect() == 4  # two sandboxes per declared CPU
    assert calls == ["auto"] * (failed + 1)
    assert len([r for r in caplog.records if "trying again" in r.getMessage()]) == failed


def test_the_last_attempt_failing_is_one_line_of_bad_input(monkeypatch):
    calls = scripted_join(monkeypatch, [ABORTED] * JOIN_ATTEMPTS)
    with pytest.raises(InputError) as raised:
        backend().connect()
    assert (
        str(raised.value)
        == "--verify-on: cannot join the Ray cluster at auto: Initialization failure from server:"
    )
    assert len(calls) == JOIN_ATTEMPTS


@pytest.mark.parametrize(
    "error", [ConnectionError("no cluster"), RuntimeError("version mismatch"), ValueError("")]
)
def test_any_other_failure_ends_at_once(monkeypatch, error):
    calls = scripted_join(monkeypatch, [error])
    with pytest.raises(InputError, match="cannot join the Ray cluster at auto: ") as raised:
        backend().connect()
    assert "\n" not in str(raised.value)
    assert str(raised.value).endswith(str(error) or type(error).__name__)
    assert calls == ["auto"]
