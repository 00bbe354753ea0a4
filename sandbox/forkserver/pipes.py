"""The fork-server's plumbing around each child (server.py): reading its pipes into bounded
tails until it ends or its deadline passes, cleaning up after it, and answering one line.

Standard library only; sent into the jail as source, after child.py and before server.py
(worker.SERVER_SOURCE).
"""

import json
import os
import select
import shutil
import signal
import time


class _Tail:
    """The first line (for the ready record) and the last `cap` bytes of a pipe."""

    def __init__(self, cap):
        self.cap = cap
        self.total = 0
        self.head = b""
        self.buf = bytearray()

    def feed(self, data):
        if len(self.head) < len(READY):
            self.head += data[: len(READY) - len(self.head)]
        self.total += len(data)
        self.buf += data[-self.cap :]
        if len(self.buf) > self.cap:
            del self.buf[: len(self.buf) - self.cap]

    def text(self):
        body = self.buf.decode("utf-8", errors="replace")
        dropped = self.total - len(self.buf)
        return f"[... {dropped} bytes dropped ...]\n{body}" if dropped else body


def _watch(pid, deadline, pipes):
    """Read the pipes until the child ends or the deadline passes (then SIGKILL it). True if killed."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    for fd in pipes:
        poller.register(fd, select.POLLIN)
    open_fds = set(pipes)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                return True
            for fd, _ in poller.poll(left * 1000 + 1):
                if fd == pidfd:
                    return False
                data = os.read(fd, 1 << 16)
                if data:
                    pipes[fd].feed(data)
                elif fd in open_fds:
                    open_fds.discard(fd)
                    poller.unregister(fd)
    finally:
        os.close(pidfd)


def _drain(pipes):
    """After the child (and with it its namespace) is gone: the rest of what it wrote."""
    for fd, sink in pipes.items():
        os.set_blocking(fd, False)
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                break  # a writer outlived the child: only possible without isolation
            if not data:
                break
            sink.feed(data)


def _remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _empty_dir(path):
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        _remove_tree(os.path.join(path, name))
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            pass


def _kill_leftovers():
    """Where the server's uid is its own: every other process of that uid is a leftover."""
    for _ in range(100):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.001)


def _write_line(record):
    data = json.dumps(record, ensure_ascii=True).encode("ascii") + b"\n"
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]
