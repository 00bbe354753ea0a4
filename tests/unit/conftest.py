"""Unit tests run in-process: no network server, no connection, whatever user runs them. A test
that needs a socket on 127.0.0.1 belongs in tests/loopback/."""

import socket
from collections.abc import Callable

import pytest

NETWORK = (socket.AF_INET, socket.AF_INET6)


def _refusing_network(method: Callable[..., object]) -> Callable[..., object]:
    def guarded(self: socket.socket, *args: object) -> object:
        if self.family in NETWORK:
            raise RuntimeError("a unit test opened a network socket: it belongs in tests/loopback/")
        return method(self, *args)

    return guarded


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, _refusing_network(getattr(socket.socket, name)))
