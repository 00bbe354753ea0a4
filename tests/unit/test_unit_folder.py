"""The unit folder's guard (tests/unit/conftest.py): no network socket binds or connects here,
while the local sockets an event loop needs keep working."""

import asyncio
import socket

import pytest


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
@pytest.mark.parametrize("call", ["bind", "connect", "connect_ex"])
def test_a_network_socket_is_refused_and_says_where_the_test_belongs(family: int, call: str) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        address = ("127.0.0.1", 0) if family == socket.AF_INET else ("::1", 0)
        with pytest.raises(RuntimeError, match="tests/loopback/"):
            getattr(sock, call)(address)


def test_local_sockets_and_an_event_loop_still_work() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"
    assert asyncio.run(asyncio.sleep(0, result=1)) == 1
