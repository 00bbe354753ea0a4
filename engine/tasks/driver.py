"""The driver: runs INSIDE the jail, as the program of one sample of an output-comparing kind
(stdin/stdout, call-based, EvalPlus-style). Standard library only and self-contained: its source
is embedded in the program (engine/tasks/programs.py), followed by `_drive(CONFIG_JSON)`.

The driver never runs candidate code in its own process. It compiles the candidate once, then
forks a runner for it: for stdin/stdout one runner per test (the test's input on stdin, its
stdout read back through a pipe); for call-based one runner that calls the function on each
test's arguments in turn and writes the return value, serialised with type tags, to a pipe (a new
runner resumes after a test that killed the previous one). A runner has no descriptor of the
driver's (status, nonce, output): it can neither write the driver's report nor forge the pass
record. The driver holds no expected output either: the engine compares (engine/tasks/judging.py).

The report, one JSON line per test on stdout (the jail's captured output), then an end line:

    {"t": i, "s": status, "d": digest, "x": text, "e": error}   status: ok | exit | signal |
        timeout | oom | exception | unserialisable; d: sha256 of the canonical text (first 16
        hex digits); x: the text itself while the report's text budget lasts
    {"end": tests_run}

For stdin/stdout the text is the test's stdout; for call-based, the tagged return value. Fail
fast (the default): the first test that does not end "ok" ends the run; with "all", every test
runs (a fraction passed, for RL rewards). Whether an "ok" output is right only the engine knows.
"""

import io
import json
import os
import select
import signal
import sys
import time
import traceback

# Shared with the engine, which decodes what the driver encodes. In the jail the engine cannot be
# imported: engine/tasks/programs.py puts encoding.py's source in place of this line.
from engine.tasks.encoding import Unserialisable, canonical_json, canonical_stdout, digest, encode

OOM_EXIT = 3  # a runner's MemoryError (the status only classifies a failure: never a pass)
ERROR_TAIL_BYTES = 2048
READ_BYTES = 1 << 16


class Report:
    """Writes the report lines to the driver's stdout; texts until the budget is spent."""

    def __init__(self, budget):
        self.budget = budget

    def test(self, index, status, text=None, canon=None, error=""):
        record = {"t": index, "s": status}
        if text is not None:
            record["d"] = digest(canon if canon is not None else text)
            if len(text) <= self.budget:
                self.budget -= len(text)
                record["x"] = text
        if error:
            record["e"] = error[-ERROR_TAIL_BYTES:]
        _write_line(1, record)

    def end(self, count):
        _write_line(1, {"end": count})


def _write_line(fd, record):
    data = (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _drive(config_json):
    config = json.loads(config_json)
    report = Report(int(config["text_budget"]))
    try:
        code = compile(config["code"], "<candidate>", "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        report.test(0, "exception", error=f"{type(exc).__name__}: {exc}")
        report.end(0)
        return
    if config["mode"] == "stdio":
        ran = _drive_stdio(code, config, report)
    else:
        ran = _drive_calls(code, config, report)
    report.end(ran)


def _inputs(config):
    """The test inputs: in the config, or else the problem's data blob, which the fork-server
    puts in this program's globals (sandbox/forkserver/server.py, PROTOCOL: "Problem data")."""
    if "inputs" in config:
        return config["inputs"]
    return json.loads(globals()["__problem_data__"])


def _drive_stdio(code, config, report):
    tests = _inputs(config)
    for index, stdin_text in enumerate(tests):
        status, out, err = _run_stdio_test(code, stdin_text, float(config["test_s"]))
        text = out.decode("utf-8", "replace")
        report.test(index, status, text, canonical_stdout(text), err.decode("utf-8", "replace"))
        if status != "ok" and not config.get("all"):
            return index + 1
    return len(tests)


def _run_stdio_test(code, stdin_text, limit_s):
    stdin_fd = _memory_file(stdin_text.encode("utf-8"))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _runner(code, limit_s, stdin_fd, out_w, err_w, None, None)
    for fd in (stdin_fd, out_w, err_w):
        os.close(fd)
    out, err = bytearray(), bytearray()
    timed_out = _watch(pid, wall_limit(limit_s), {out_r: out, err_r: err}, None)
    status = _status(_reap(pid), timed_out)
    return status, bytes(out), bytes(err)


def _drive_calls(code, config, report):
    """Runners in turn, each resuming at the first test the previous one did not answer."""
    tests = [json.dumps(args) for args in _inputs(config)]
    start = 0
    while start < len(tests):
        answered, failed = _run_calls(code, config, tests, start, report)
        start = answered
        if failed and not config.get("all"):
            return start
    return len(tests)


def _run_calls(code, config, tests, start, report):
    """One runner from test `start`: (the next test to run, whether a test failed)."""
    limit_s = float(config["test_s"])
    res_r, res_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        stdin_fd = _memory_file(b"")
        _runner(code, limit_s, stdin_fd, err_w, err_w, res_w, (config["fn"], tests, start))
    os.close(res_w)
    os.close(err_w)
    err = bytearray()
    lines = _Lines(start, len(tests), report, config.get("all"))
    timed_out = _watch(pid, wall_limit(limit_s), {res_r: lines, err_r: err}, lines)
    status = _status(_reap(pid), timed_out)
    if lines.stopped:
        return lines.next, lines.failed
    # The runner ended (or was killed) without answering this test: that is the test's failure.
    if status == "ok":
        status, err = "exit", bytearray(b"the program ended before answering")
    report.test(lines.next, status, error=err.decode("utf-8", "replace"))
    return lines.next + 1, True


class _Lines:
    """Result lines from a call runner, each reported as it arrives; each restarts the clock."""

    def __init__(self, start, total, report, run_all):
        self.next, self.total, self.report, self.run_all = start, total, report, run_all
        self.partial = bytearray()
        self.failed = False
        self.stopped = False  # fail fast: a failure was reported, the runner is to be killed
        self.progress = False

    def __iadd__(self, data):
        self.partial += data
        while b"\n" in self.partial and not self.stopped:
            line, _, rest = bytes(self.partial).partition(b"\n")
            self.partial = bytearray(rest)
            self._record(line)
        return self

    def _record(self, line):
        try:
            record = json.loads(line)
            status, value, error = record["s"], record.get("v"), str(record.get("e", ""))
        except (ValueError, KeyError, TypeError):
            status, value, error = "exception", None, "a malformed result line"
        if status not in ("ok", "exception", "oom", "unserialisable"):
            status = "exception"
        text = canonical_json(value) if status == "ok" else None
        self.report.test(self.next, status, text, error=error)
        self.progress = True
        self.next += 1
        if status != "ok":
            self.failed = True
            self.stopped = not self.run_all
        if self.next >= self.total:
            self.stopped = True


def wall_limit(cpu_limit_s):
    """A test's wall clock: well beyond its CPU limit, so that a busy loop meets the CPU limit
    (blind to the machine's load) first; only a program that sleeps or blocks meets this."""
    return 3 * cpu_limit_s + 1


def _memory_file(data):
    fd = os.memfd_create("stdin")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _watch(pid, limit_s, sinks, lines):
    """Read the pipes until the runner ends; kill it at the test's wall-clock limit (restarted by
    every answered call) or once fail-fast has seen a failure. True if it was timed out."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    for fd in sinks:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + limit_s
    try:
        while True:
            if lines is not None and lines.progress:
                lines.progress = False
                deadline = time.monotonic() + limit_s
            if lines is not None and lines.stopped:
                _kill(pid)
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                _kill(pid)
                return True
            for fd, _ in poller.poll(left * 1000 + 1):
                if fd == pidfd:
                    _drain(sinks)
                    return False
                data = os.read(fd, READ_BYTES)
                if data:
                    sinks[fd] += data
                else:
                    poller.unregister(fd)
    finally:
        os.close(pidfd)
        for fd in sinks:
            os.close(fd)


def _drain(sinks):
    for fd, sink in sinks.items():
        os.set_blocking(fd, False)
        while True:
            try:
                data = os.read(fd, READ_BYTES)
            except BlockingIOError:
                break
            if not data:
                break
            sink += data


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap(pid):
    _, wait_status = os.waitpid(pid, 0)
    return wait_status


def _status(wait_status, timed_out):
    if timed_out:
        return "timeout"
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        return "timeout" if sig in (signal.SIGPROF, signal.SIGXCPU) else "signal"
    code = os.waitstatus_to_exitcode(wait_status)
    if code == 0:
        return "ok"
    return "oom" if code == OOM_EXIT else "exit"


def _runner(code, limit_s, stdin_fd, out_fd, err_fd, result_fd, calls):
    """In the forked runner: only its own descriptors, then the candidate. Never returns."""
    try:
        os.dup2(stdin_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        keep = 3
        if result_fd is not None:
            os.dup2(result_fd, keep)
            keep += 1
        os.closerange(keep, 1 << 16)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=False)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)  # the CPU limit ends the runner itself
        if hasattr(sys, "set_int_max_str_digits"):
            sys.set_int_max_str_digits(0)
    except BaseException:  # noqa: BLE001
        os._exit(125)
    namespace = {"__name__": "__main__" if calls is None else "candidate", "__builtins__": __builtins__}
    if calls is None:
        signal.setitimer(signal.ITIMER_PROF, limit_s)
        os._exit(_exec_main(code, namespace))
    _serve_calls(code, namespace, limit_s, *calls)


def _exec_main(code, namespace):
    """A stdin/stdout program: its exit status (0 when it ran to the end or exit(0)/exit())."""
    try:
        exec(code, namespace)
    except SystemExit as exc:
        status = 0 if exc.code is None or exc.code == 0 else 1
    except MemoryError:
        status = OOM_EXIT
    except BaseException as exc:  # noqa: BLE001 - any exception is a runtime error
        below = exc.__traceback__.tb_next if exc.__traceback__ else None  # the candidate's frames only
        traceback.print_exception(type(exc), exc, below)
        status = 1
    else:
        status = 0
    try:
        sys.stdout.flush()
    except BaseException:  # noqa: BLE001
        status = status or 1
    return status


def _serve_calls(code, namespace, limit_s, name, tests, start):
    """A call runner: the candidate's module once, then one result line per test on fd 3."""
    write, exit_now, dumps, setitimer = os.write, os._exit, json.dumps, signal.setitimer
    result_fd, prof = 3, signal.ITIMER_PROF
    try:
        setitimer(prof, limit_s)
        exec(code, namespace)
        function = _find_function(namespace, name)
        setitimer(prof, 0)
    except MemoryError:
        _result(write, dumps, result_fd, {"s": "oom", "e": "MemoryError"})
        exit_now(OOM_EXIT)
    except BaseException as exc:  # noqa: BLE001
        _result(write, dumps, result_fd, {"s": "exception", "e": _error(exc)})
        exit_now(1)
    for index in range(start, len(tests)):
        args = json.loads(tests[index])  # fresh arguments: the candidate may mutate them
        try:
            setitimer(prof, limit_s)
            value = function(*args)
            setitimer(prof, 0)
            record = {"s": "ok", "v": encode(value)}
        except MemoryError:
            record = {"s": "oom", "e": "MemoryError"}
        except Unserialisable as exc:
            record = {"s": "unserialisable", "e": str(exc)}
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: the call did not return
            record = {"s": "exception", "e": _error(exc)}
        _result(write, dumps, result_fd, record)
    exit_now(0)


def _find_function(namespace, name):
    """A top-level function, or a method of LeetCode's `class Solution`."""
    function = namespace.get(name)
    if callable(function):
        return function
    solution = namespace.get("Solution")
    if isinstance(solution, type) and callable(getattr(solution, name, None)):
        return getattr(solution(), name)
    raise NameError(f"the program defines no function {name!r}")


def _error(exc):
    try:
        return f"{type(exc).__name__}: {exc}"[:300]
    except BaseException:  # noqa: BLE001
        return "an exception"


def _result(write, dumps, fd, record):
    try:
        write(fd, (dumps(record, ensure_ascii=True) + "\n").encode("ascii"))
    except BaseException:  # noqa: BLE001
        exit_now = os._exit
        exit_now(1)
