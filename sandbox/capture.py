"""Bounded capture of a worker's stderr: read everything, keep only a tail."""

from __future__ import annotations


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
