"""Runs a problem's checker in the jail (its source is the program the sandbox runs, with one call
appended by engine/tasks/checker.py). Standard library only and self-contained.

For each case, the three texts go into memory files and a forked child runs the checker as
`checker INPUT OUTPUT ANSWER` (testlib's order: the test's input, the candidate's output, the
expected answer), with sys.argv holding their paths (/proc/self/fd/N), stdin, stdout and stderr
on an empty memory file that nobody reads (so nothing the checker prints can look like this
harness's report) and a CPU limit.
This process writes one line per case, then an end line:

    {"k": i, "r": result, "c": exit status or null}    result: accept | reject | fail | crash | timeout
    {"checked": n}

accept: exit status 0 (or the checker's source ran to its end); reject: 1 or 2 (testlib's
wrong answer and presentation error); fail: any other status (testlib's 3: the checker failed);
crash: an uncaught exception or a signal; timeout: the limit. Stops after the first case that
is not accepted unless told to check all.
"""

import json
import os
import signal
import sys
import time

CRASH_EXIT = 120
REJECT_EXITS = (1, 2)


def _check_all(config_json):
    config = json.loads(config_json)
    source, limit_s = config["source"], float(config["limit_s"])
    code = compile(source, "checker.py", "exec")
    count = 0
    for case in config["cases"]:
        result, status = _check_one(code, case, limit_s)
        _write({"k": case["k"], "r": result, "c": status})
        count += 1
        if result != "accept" and not config["all"]:
            break
    _write({"checked": count})


def _write(record):
    data = (json.dumps(record) + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


def _memory_file(text):
    fd = os.memfd_create("check")
    data = text.encode("utf-8", "surrogatepass")
    while data:
        data = data[os.write(fd, data) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _check_one(code, case, limit_s):
    fds = [_memory_file(case[name]) for name in ("input", "output", "answer")]
    pid = os.fork()
    if pid == 0:
        _child(code, fds, limit_s)
    for fd in fds:
        os.close(fd)
    deadline = time.monotonic() + 2 * limit_s + 1  # wall clock: a checker that sleeps
    while True:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            return _result(wait_status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", None
        time.sleep(0.002)


def _result(wait_status):
    if os.WIFSIGNALED(wait_status):
        if os.WTERMSIG(wait_status) in (signal.SIGXCPU, signal.SIGKILL):
            return "timeout", None
        return "crash", None
    status = os.waitstatus_to_exitcode(wait_status)
    if status == 0:
        return "accept", 0
    if status in REJECT_EXITS:
        return "reject", status
    return ("crash" if status == CRASH_EXIT else "fail"), status


def _child(code, fds, limit_s):
    status = 0
    try:
        import resource

        _limit_cpu(resource, max(1, int(limit_s + 0.999)))
        sink = _memory_file("")  # the jail has no /dev/null: what the checker prints lands here
        for target in (0, 1, 2):
            os.dup2(sink, target)
        sys.argv = ["checker"] + [f"/proc/self/fd/{fd}" for fd in fds]
        exec(code, {"__name__": "__main__"})
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException:
        status = CRASH_EXIT
    os._exit(status)


def _limit_cpu(resource, seconds):
    """Lower the CPU limit (never above the jail's own hard limit: raising it is not allowed)."""
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        seconds = min(seconds, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, hard))
    else:
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))


def _exit_status(code):
    """sys.exit's argument as the exit status Python would give it."""
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code & 0xFF
    return 1  # sys.exit("message")
