"""The child's side of the fork-server: what runs in the fresh child of each program, after
Server._child (server.py) has set up its namespaces: rlimits, the run itself (plain, or guarded
through guards.py), and its status records on STATUS_FD.

Standard library only; sent into the jail as source, after guards.py and before pipes.py and
server.py (worker.SERVER_SOURCE), so that server.py uses these names as its own.
"""

import ctypes
import json
import os
import resource
import sys
import traceback

READY = b'{"event":"ready"}\n'
MAX_MESSAGE_CHARS = 300
CHILD_SETUP_FAILED = 125
PR_SET_DUMPABLE = 4
STATUS_FD, NONCE_FD = 3, 4

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _first_for_the_oom_killer():
    """Memory no rlimit sees (memfd, tmpfs, page cache) can fill the jail's memory cgroup; its OOM
    killer must then take this child (and all it spawns: inherited), never the fork-server. (A
    non-dumpable process's /proc files belong to root: dumpable for the moment of the write,
    before any untrusted code exists in it.)"""
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
    try:
        os.write(fd, b"1000")
    finally:
        os.close(fd)
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def _run_program(source, guards=None, data=None):
    """Run the program; with `guards` (a GuardSnapshot), a program built with guards runs as
    candidate, restore, test (guards.py); any other program (a probe) as it is, with its
    problem data (bytes, if any) as `__problem_data__` in its globals."""
    write, exit_now, read, dumps = os.write, os._exit, os.read, json.dumps
    print_exception = traceback.print_exception
    sys.stdin = sys.__stdin__ = open(0, closefd=False)  # the server's stdin buffer stays out of reach
    flush_out, flush_err = sys.stdout.flush, sys.stderr.flush
    parts = guard_split(source) if guards is not None else None
    if parts is not None:
        guards.accept(sys)
    write(STATUS_FD, READY)
    try:
        if parts is None:
            exec(compile(source, "<program>", "exec"), {} if data is None else {"__problem_data__": data})
        else:
            guard_run(guards, *parts)
    except MemoryError:
        _report(write, dumps, "oom", "MemoryError", "")
        _flush(flush_out, flush_err)
        exit_now(1)
    except BaseException as exc:  # noqa: BLE001 - every way out of exec is a failure
        _report(write, dumps, "failed", _type_name(exc), _message(exc))
        _print_traceback(print_exception, exc)
        _flush(flush_out, flush_err)
        exit_now(1)
    _flush(flush_out, flush_err)
    try:
        nonce = read(NONCE_FD, 64)
        write(STATUS_FD, b'{"event":"passed","nonce":"' + nonce + b'"}\n')
    finally:
        exit_now(0)


def _cpu_limit_reached(signum, frame, write=os.write, exit_now=os._exit):
    try:
        write(STATUS_FD, b'{"event":"cpu_limit"}\n')
    finally:
        exit_now(1)


def _flush(*flushes):
    for flush in flushes:
        try:
            flush()
        except BaseException:  # noqa: BLE001
            pass


def _set_rlimits(limits):
    mb = 1 << 20
    cpu = int(max(float(limits.get("timeout_s", 3.0)), float(limits.get("cpu_time_s") or 0.0))) + 3
    for which, value in (
        (resource.RLIMIT_AS, int(limits.get("memory_mb", 1024)) * mb),
        (resource.RLIMIT_NPROC, int(limits.get("max_processes", 32))),
        (resource.RLIMIT_FSIZE, int(limits.get("max_file_mb", 16)) * mb),
        (resource.RLIMIT_NOFILE, int(limits.get("max_open_files", 64))),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_CPU, cpu),
    ):
        resource.setrlimit(which, (value, value))


def _report(write, dumps, event, type_name, message):
    try:
        record = dumps({"event": event, "type": type_name, "message": message})
        write(STATUS_FD, record.encode("utf-8", errors="replace") + b"\n")
    except BaseException:  # noqa: BLE001 - no record then; the verdict follows from how it ended
        pass


def _type_name(exc):
    try:
        return str(type(exc).__name__)
    except BaseException:  # noqa: BLE001
        return "BaseException"


def _message(exc):
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a program-defined __str__ may raise
        return "<unprintable message>"
    return " ".join(text.split())[:MAX_MESSAGE_CHARS]


def _print_traceback(print_exception, exc):
    try:
        below = exc.__traceback__.tb_next if exc.__traceback__ else None
        print_exception(type(exc), exc, below, limit=-8, file=sys.stderr)
    except BaseException:  # noqa: BLE001
        pass
