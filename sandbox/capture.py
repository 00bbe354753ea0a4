"""Bounded capture of a child's pipes: read everything, keep only a tail."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


class TailBuffer:
    """Keeps the last `cap` bytes fed to it and counts the rest."""

    def __init__(self, cap: int):
        self.cap = cap
        self.total = 0
        self._tail = bytearray()

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        self._tail += data[-self.cap :]
        excess = len(self._tail) - self.cap
        if excess > 0:
            del self._tail[:excess]

    @property
    def dropped(self) -> int:
        return self.total - len(self._tail)

    def text(self) -> str:
        body = self._tail.decode("utf-8", errors="replace")
        if self.dropped:
            return f"[... {self.dropped} bytes dropped ...]\n{body}"
        return body


class _PipeProtocol(asyncio.Protocol):
    def __init__(self, sink: Callable[[bytes], None], closed: asyncio.Future[None]):
        self._sink = sink
        self._closed = closed

    def data_received(self, data: bytes) -> None:
        self._sink(data)

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


class PipeReader:
    """Feeds every chunk read from a pipe's read end to `sink` until EOF (no backpressure needed:
    sinks keep bounded state). Owns the fd from construction on."""

    def __init__(self, fd: int, sink: Callable[[bytes], None]):
        self._fd: int | None = fd
        self._sink = sink
        self._transport: asyncio.ReadTransport | None = None
        self._closed: asyncio.Future[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        pipe = os.fdopen(self._take_fd(), "rb", buffering=0)
        try:
            self._transport, _ = await loop.connect_read_pipe(
                lambda: _PipeProtocol(self._sink, self._closed), pipe
            )
        except BaseException:
            pipe.close()
            raise

    async def wait_eof(self, timeout_s: float) -> bool:
        """Wait until the writers are gone; False if they still held the pipe at the deadline."""
        if self._closed is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout_s)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._fd is not None:
            os.close(self._take_fd())

    def _take_fd(self) -> int:
        fd, self._fd = self._fd, None
        assert fd is not None
        return fd
