"""The hostile matrix, through the real sandbox, for every isolating backend (nsjail, firejail).

Each test runs hostile code and asserts the verdict, that the pool keeps working afterwards, and
that nothing of it remains on the host: every worker jail holds exactly the processes it held
when it started (its jail process(es) and the fork-server), no process carries the test's
marker, and no connection reached a listener of ours. A guarantee a backend cannot give here is
skipped or weakened with the reason stated in the test.
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvloop

from engine.records import Problem
from engine.tasks import load_problems
from sandbox import Limits, Outcome, SandboxPool, Verdict, check_program
from sandbox.cgroups import own_cgroups
from sandbox.errors import SandboxError

FAST = Limits(timeout_s=1.0)  # for programs expected to time out: keeps the suite short
PREFIX = str(Path(sys.base_prefix).resolve())
PROJECT = str(Path(__file__).resolve().parents[2])
BACKENDS = ["nsjail", "firejail"]


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in Path(entry.path, "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass
class Sandbox:
    kind: str
    loop: asyncio.AbstractEventLoop
    pool: SandboxPool
    baseline: int  # processes under one worker's top process, right after start

    def run(self, program: str, limits: Limits | None = None) -> Outcome:
        outcome = self.loop.run_until_complete(self.pool.run(program, limits=limits))
        self.assert_clean()
        return outcome

    def run_many(self, programs: list[str], limits: Limits | None = None) -> list[Outcome]:
        async def many() -> list[Outcome]:
            return await asyncio.gather(*(self.pool.run(p, limits=limits) for p in programs))

        outcomes = self.loop.run_until_complete(many())
        self.assert_clean()
        return outcomes

    def assert_clean(self, grace_s: float = 3.0) -> None:
        """Every live worker holds only its baseline processes (a killed jail may need a moment)."""
        deadline = time.monotonic() + grace_s
        while True:
            extra = {pid: len(descendants(pid)) for pid in self.pool.backend.worker_pids()}
            bad = {pid: n for pid, n in extra.items() if n != self.baseline}
            if not bad or time.monotonic() > deadline:
                break
            self.loop.run_until_complete(asyncio.sleep(0.05))
        assert not bad, (
            f"{self.kind}: workers hold other processes than their own ({bad}, baseline {self.baseline})"
        )

    def assert_still_works(self) -> None:
        outcome = self.run(SIMPLE_PASS)
        assert outcome.verdict is Verdict.passed, outcome.detail


SIMPLE_PASS = "def check(f):\n    assert f(3) == 9\n\ncheck(lambda x: x * x)\n"


@pytest.fixture(scope="module", params=BACKENDS)
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    loop = uvloop.new_event_loop()
    pool = SandboxPool(workers=2, limits=Limits(), backend=request.param)
    try:
        loop.run_until_complete(pool.start())
    except SandboxError as exc:
        loop.close()
        if request.param == "firejail" and "not installed" in str(exc):
            pytest.skip(f"firejail backend unavailable here: {exc}")
        raise
    pids = pool.backend.worker_pids()
    counts = {len(descendants(pid)) for pid in pids}
    assert len(counts) == 1, counts
    box = Sandbox(request.param, loop, pool, counts.pop())
    yield box
    loop.run_until_complete(pool.close())
    loop.close()
    # Only this checkout's jails (their command lines name it): other engines may run on the host.
    ours = [
        pid
        for label in ("engine-sandbox-nsjail-", "engine-sandbox-firejail-")
        for pid in processes_with(label)
        if PROJECT.encode() in _cmdline(pid)
    ]
    assert not ours, [_cmdline(pid)[:300] for pid in ours]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.fixture(scope="module", autouse=True)
def nothing_left_on_the_host() -> Iterator[None]:
    """After all these tests: no staging dir or cgroup of this process remains."""
    yield
    mine = f"engine-sandbox-{os.getpid()}-*"
    own = own_cgroups(Path("/proc/self/cgroup").read_text())
    left = [*Path("/tmp").glob(mine)]
    for controller in ("cpu", "cpuacct", "memory"):
        left += Path("/sys/fs/cgroup", controller, own.get(controller, "/").lstrip("/")).glob(mine)
    assert left == [], f"left on the host: {left}"


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return load_problems()


@pytest.fixture(scope="module")
def first(problems: list[Problem]) -> Problem:
    return problems[0]  # HumanEval/0, has_close_elements


def he(problem: Problem, completion: str) -> str:
    return check_program(problem.prompt + completion, problem.payload["test"], problem.payload["entry_point"])


def new_marker() -> str:
    return f"sandbox-test-{uuid.uuid4().hex[:12]}"


# --- correctness on HumanEval ----------------------------------------------------------------


def test_canonical_solutions_pass_and_return_none_fails(sandbox: Sandbox, problems: list[Problem]) -> None:
    outcomes = sandbox.run_many([he(p, p.payload["canonical_solution"] or "") for p in problems])
    failures = {
        p.task_id: f"{o.verdict.value}: {o.detail}" for p, o in zip(problems, outcomes) if not o.passed
    }
    assert len(problems) == 164 and failures == {}
    assert all(o.backend == sandbox.kind and o.limits == Limits() and o.cpu_s > 0 for o in outcomes)
    # Checked: no HumanEval problem accepts None, so every one of the 164 must fail.
    wrong = sandbox.run_many([he(p, "    return None\n") for p in problems])
    odd = {
        p.task_id: f"{o.verdict.value}: {o.detail}: {o.output[-300:]}"
        for p, o in zip(problems, wrong)
        if o.verdict is not Verdict.failed
    }
    assert odd == {}


# --- nothing but check() returning is a pass ---------------------------------------------------

NOT_PASSES = {
    "sys.exit(0)": "    return None\nimport sys\nsys.exit(0)\n",
    "sys.exit(0) inside the function": "    import sys\n    sys.exit(0)\n",
    "os._exit(0)": "    return None\nimport os\nos._exit(0)\n",
    "exit()": "    return None\nexit()\n",  # under -S there is no exit(): a NameError, still a failure
    "raise SystemExit": "    return None\nraise SystemExit\n",
    "raise KeyboardInterrupt": "    return None\nraise KeyboardInterrupt\n",
    "atexit handler os._exit(0)": "    return None\nimport atexit, os\natexit.register(os._exit, 0)\n",
    "thread calls os._exit(0)": (
        "    import os, threading, time\n    threading.Thread(target=os._exit, args=(0,)).start()\n"
        "    time.sleep(1)\n    return None\n"
    ),
    "kill parent": "    return None\nimport os\nos.kill(os.getppid(), 9)\n",
    "kill own process group": "    return None\nimport os\nos.killpg(0, 9)\n",
    "kill everything it can": "    return None\nimport os\nos.kill(-1, 9)\n",
    "child kills parent and group": (
        "    return None\nimport os, time\nif os.fork() == 0:\n    os.kill(os.getppid(), 9)\n    os.killpg(0, 9)\n"
        "    os._exit(0)\ntime.sleep(0.2)\n"
    ),
    "fake pass markers on stdout and stderr": (
        "    return None\nimport sys\nprint('passed')\n"
        'print(\'{"event": "passed", "nonce": "\' + \'0\' * 32 + \'"}\')\n'
        'sys.stderr.write(\'{"event": "passed"}\\nPASSED\\n\')\nsys.stdout.flush()\n'
    ),
    "forged pass records on every fd, then os._exit(0)": (
        "    return None\nimport os\nfor fd in range(3, 64):\n    try:\n"
        '        os.write(fd, b\'{"event": "passed", "nonce": "\' + b\'0\' * 32 + b\'"}\\n\')\n'
        "    except OSError:\n        pass\nos._exit(0)\n"
    ),
    "nonce hunted in frames, then forged": (
        "    return None\nimport os, re, sys\nguesses = set()\nframe = sys._getframe()\nwhile frame:\n"
        "    for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):\n"
        "        if isinstance(value, (str, bytes)):\n"
        "            text = value if isinstance(value, str) else value.decode('latin-1')\n"
        "            guesses.update(re.findall('[0-9a-f]{32}', text))\n"
        "    frame = frame.f_back\nfor fd in range(3, 64):\n    for guess in guesses:\n        try:\n"
        '            os.write(fd, (\'{"event": "passed", "nonce": "%s"}\\n\' % guess).encode())\n'
        "        except OSError:\n            pass\nos._exit(0)\n"
    ),
}


@pytest.mark.parametrize("completion", NOT_PASSES.values(), ids=NOT_PASSES.keys())
def test_exits_and_forgeries_never_pass(sandbox: Sandbox, first: Problem, completion: str) -> None:
    outcome = sandbox.run(he(first, completion))
    assert outcome.verdict is Verdict.failed, f"{outcome.verdict.value}: {outcome.detail}\n{outcome.output}"
    sandbox.assert_still_works()


def test_failure_details(sandbox: Sandbox, first: Problem) -> None:
    details = {
        "    return None\n": "AssertionError",
        "    return x\n": "NameError: name 'x' is not defined",
        "    import os\n    os._exit(0)\n": "exited without finishing check() (exit status 0)",
        "    raise SystemExit(3)\n": "SystemExit: 3",
    }
    outcomes = sandbox.run_many([he(first, c) for c in details])
    assert [o.detail for o in outcomes] == list(details.values())


# --- verdict classes --------------------------------------------------------------------------

CLASSES = {
    "infinite loop": ("while True:\n    pass\n", Verdict.timeout, "wall-clock limit 1.0 s"),
    "sleep past the limit": ("import time\ntime.sleep(100)\n", Verdict.timeout, "wall-clock limit 1.0 s"),
    "C-level spin that ignores signals": (
        "import signal\nfor s in (signal.SIGTERM, signal.SIGINT):\n"
        "    signal.signal(s, signal.SIG_IGN)\nx = 10 ** (10 ** 9)\n",
        Verdict.timeout,
        "wall-clock limit 1.0 s",
    ),
    "ignores SIGTERM": (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(100)\n",
        Verdict.timeout,
        "wall-clock limit 1.0 s",
    ),
    "memory bomb": ("x = bytearray(10**10)\n", Verdict.oom, "MemoryError"),
    "append MBs until full": (
        "chunks = []\nwhile True:\n    chunks.append(b'x' * 2**20)\n",
        Verdict.oom,
        "MemoryError",
    ),
    "slow memory creep": (
        "import time\nchunks = []\nwhile True:\n    chunks.append(b'x' * 2**22)\n    time.sleep(0.001)\n",
        Verdict.oom,
        "MemoryError",
    ),
    "deep recursion": (
        "def f(n):\n    return f(n + 1)\nf(0)\n",
        Verdict.failed,
        "RecursionError: maximum recursion depth exceeded",
    ),
    "ctypes segfault": ("import ctypes\nctypes.string_at(0)\n", Verdict.error, "killed by SIGSEGV"),
    "syntax error": (
        "def f(:\n    pass\n",
        Verdict.failed,
        "SyntaxError: invalid syntax (<program>, line 1)",
    ),
    "os.abort()": ("import os\nos.abort()\n", Verdict.error, "killed by SIG"),
    "writes a huge file": (
        "open('big', 'wb').write(b'x' * (64 * 2**20))\n",
        Verdict.failed,
        "OSError: [Errno 27] File too large",
    ),
}


@pytest.mark.parametrize(("program", "verdict", "detail"), CLASSES.values(), ids=CLASSES.keys())
def test_verdict_classes(sandbox: Sandbox, program: str, verdict: Verdict, detail: str) -> None:
    # A short clock only where a timeout is expected; a loaded machine needs slack for the others.
    timeout_s = 1.0 if verdict is Verdict.timeout else 10.0
    outcome = sandbox.run(program, Limits(timeout_s=timeout_s, memory_mb=512, max_file_mb=16))
    assert outcome.verdict is verdict, f"{outcome.verdict.value}: {outcome.detail}\n{outcome.output}"
    assert outcome.detail.startswith(detail), outcome.detail
    if verdict is Verdict.timeout:
        assert outcome.wall_s >= 1.0
    sandbox.assert_still_works()


CPU_BOUND = Limits(timeout_s=20.0, cpu_time_s=0.3)


def test_busy_loop_meets_the_cpu_time_limit_long_before_the_wall_clock(sandbox: Sandbox) -> None:
    outcome = sandbox.run("while True:\n    pass\n", CPU_BOUND)
    assert (outcome.verdict, outcome.detail) == (Verdict.timeout, "CPU-time limit 0.3 s")
    assert outcome.wall_s < 10.0 and outcome.limits.cpu_time_s == 0.3
    sandbox.assert_still_works()


def test_ignoring_sigprof_or_sleeping_still_meets_the_wall_clock(sandbox: Sandbox) -> None:
    programs = [
        "import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\nwhile True:\n    pass\n",
        "import time\ntime.sleep(100)\n",  # uses no CPU: only the wall clock can end it
    ]
    outcomes = sandbox.run_many(programs, Limits(timeout_s=1.0, cpu_time_s=0.3))
    assert [(o.verdict, o.detail) for o in outcomes] == [(Verdict.timeout, "wall-clock limit 1.0 s")] * 2
    sandbox.assert_still_works()


def test_fork_bomb_ends_with_nothing_left(sandbox: Sandbox) -> None:
    program = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    outcome = sandbox.run(program, FAST)
    assert outcome.verdict in (Verdict.timeout, Verdict.failed), outcome.detail
    sandbox.assert_still_works()


def test_memory_cap_covers_the_whole_jail(sandbox: Sandbox) -> None:
    """Four processes of 300 MB each fit their own 512 MB address space but not the jail's 1024 MB:
    the OOM killer must take at least one (the program passes when it did)."""
    if not sandbox.pool.backend.memory_cap:
        pytest.skip(f"{sandbox.kind}: no jail-wide memory cgroup (per-process RLIMIT_AS only)")
    program = """
import os, time
children = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        hold = b'x' * (300 * 2**20)
        time.sleep(3)  # long enough for all four to hold their memory at once, even on a loaded machine
        os._exit(0)
    children.append(pid)
killed = [os.WIFSIGNALED(os.waitpid(pid, 0)[1]) for pid in children]
assert any(killed), killed
"""

    # The pool's jails were sized for the default 1024 MB per process (2048 MB jail-wide): use a
    # pool sized for this test.
    async def body() -> Outcome:
        limits = Limits(memory_mb=512, timeout_s=30)  # slack for a loaded machine: this is about memory
        async with SandboxPool(workers=1, limits=limits, backend=sandbox.kind) as pool:
            return await pool.run(program, limits=limits)

    outcome = uvloop.run(body())
    assert outcome.verdict is Verdict.passed, f"{outcome.verdict.value}: {outcome.detail}\n{outcome.output}"


def test_huge_output_is_truncated_and_memory_stays_bounded(sandbox: Sandbox) -> None:
    program = (
        "import sys\nchunk = 'x' * (2**16 - 1) + '\\n'\nfor _ in range(1600):\n    sys.stdout.write(chunk)\n"
        "sys.stderr.write('the end\\n')\n"
    )
    Path("/proc/self/clear_refs").write_text("5")  # reset this process's peak RSS
    rss_before = _status_kb("VmRSS")
    outcome = sandbox.run(program, Limits(max_output_bytes=4096, timeout_s=20))
    peak_growth_mb = (_status_kb("VmHWM") - rss_before) / 1024
    assert outcome.verdict is Verdict.passed, outcome.detail
    assert outcome.output.startswith(f"[... {1600 * 2**16 + 8 - 4096} bytes dropped ...]\n")
    assert outcome.output.endswith("x\nthe end\n") and len(outcome.output) < 4096 + 100
    assert peak_growth_mb < 30, f"the engine grew by {peak_growth_mb:.0f} MB reading 100 MB of output"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


# --- isolation ----------------------------------------------------------------------------------


def test_host_files_are_invisible(sandbox: Sandbox) -> None:
    parents = [p for p in reversed(Path(PREFIX).parents) if str(p) != "/"]
    way_down = {
        str(p): (parents[i + 1] if i + 1 < len(parents) else Path(PREFIX)).name for i, p in enumerate(parents)
    }
    program = f"""
import os
for path in ['/etc/shadow', '/etc/gshadow', '/root/.bashrc', '/root/.profile', {PROJECT + "/pyproject.toml"!r},
             {os.path.abspath(__file__)!r}, {sys.prefix + "/pyvenv.cfg"!r}, '/proc/kcore', '/proc/1/environ']:
    try:
        open(path, 'rb').read(1)
    except OSError:
        pass
    else:
        raise AssertionError('read ' + path)
way_down = {way_down!r}  # nsjail shows the directories above the Python prefix, only the way down
for path in [{PROJECT!r}, '/root', '/home']:
    try:
        names = os.listdir(path)
    except OSError:
        continue
    assert names == ([way_down[path]] if path in way_down else []), (path, names)
"""
    outcome = sandbox.run(program)
    assert outcome.verdict is Verdict.passed, f"{outcome.detail}\n{outcome.output}"


def test_nsjail_shows_only_the_interpreter_files(sandbox: Sandbox) -> None:
    if sandbox.kind != "nsjail":
        pytest.skip("firejail shows the host's world-readable files (minus a blacklist); see the README")
    top = Path(PREFIX).parts[1]
    library_tops = {
        Path(p).parts[1] for p in ("/lib", "/lib64", "/usr/lib", "/usr/lib64") if os.path.lexists(p)
    }
    expected_root = sorted({"proc", "tmp", top} | library_tops)
    site_packages = os.path.join(
        PREFIX, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages"
    )
    program = f"""
import os
assert sorted(os.listdir('/')) == {expected_root!r}, os.listdir('/')
assert os.listdir({site_packages!r}) == []
assert not any(os.path.exists(p) for p in ['/work', '/home', '/dev', '/etc', '/sys', '/var'])
assert (os.getuid(), os.geteuid(), os.getgid()) == (65534, 65534, 65534)
assert os.getcwd() == '/tmp' and os.listdir('/tmp') == []
assert sorted(n for n in os.listdir('/proc') if n.isdigit()) == ['1'], os.listdir('/proc')
"""
    outcome = sandbox.run(program)
    assert outcome.verdict is Verdict.passed, f"{outcome.detail}\n{outcome.output}"


def test_engine_environment_is_invisible(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = uuid.uuid4().hex
    os.environ["ENGINE_TEST_SECRET"] = secret  # set in this (the engine's) process while it runs
    try:
        program = f"""
import os
assert {secret!r} not in repr(dict(os.environ)), dict(os.environ)
for pid in [n for n in os.listdir('/proc') if n.isdigit()] + ['self']:
    for name in ('environ', 'cmdline'):
        try:
            data = open('/proc/%s/%s' % (pid, name), 'rb').read()
        except OSError:
            continue
        assert {secret!r}.encode() not in data, (pid, name)
"""
        outcome = sandbox.run(program)
    finally:
        del os.environ["ENGINE_TEST_SECRET"]
    assert outcome.verdict is Verdict.passed, f"{outcome.detail}\n{outcome.output}"


def test_no_network_but_lo_and_no_way_out(sandbox: Sandbox) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        program = f"""
import socket
assert [name for _, name in socket.if_nameindex()] == ['lo'], socket.if_nameindex()
for address in [('127.0.0.1', {port}), ('127.0.0.1', 9400), ('localhost', {port})]:
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError:
        pass
    else:
        raise AssertionError('connected to %s' % (address,))
"""
        outcome = sandbox.run(program)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert outcome.verdict is Verdict.passed, f"{outcome.detail}\n{outcome.output}"


def test_no_namespaces_mounts_ptrace_or_capabilities(sandbox: Sandbox) -> None:
    program = """
import ctypes, errno, os, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
for name, call in [('unshare(NEWUSER)', lambda: libc.unshare(CLONE_NEWUSER)),
                   ('unshare(NEWNS)', lambda: libc.unshare(CLONE_NEWNS)),
                   ('clone(NEWUSER)', lambda: libc.syscall(56, CLONE_NEWUSER | 17, 0, 0, 0, 0)),
                   ('setns', lambda: libc.setns(0, 0)),
                   ('mount', lambda: libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)),
                   ('ptrace', lambda: libc.ptrace(0, 0, 0, 0))]:
    assert call() == -1 and ctypes.get_errno() == errno.EPERM, name
status = open('/proc/self/status').read()
for field in ('CapEff', 'CapPrm', 'CapAmb'):
    assert status.split(field + ':')[1].split()[0] == '0' * 16, field
assert status.split('NoNewPrivs:')[1].split()[0] == '1'
assert status.split('Seccomp:')[1].split()[0] == '2'
# what programs do need still works: threads, fork, subprocess
thread = threading.Thread(target=lambda: None)
thread.start()
thread.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
assert subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True).stdout == b'42\\n'
"""
    outcome = sandbox.run(program)
    assert outcome.verdict is Verdict.passed, f"{outcome.detail}\n{outcome.output}"


def test_writes_only_in_a_private_bounded_tmp(sandbox: Sandbox) -> None:
    program = f"""
import errno, os
for path in ['/x', '/usr/lib/x', {PREFIX + "/x"!r}, '/proc/x', '/root/x', '/lib/x', '/var/tmp/x', '/run/lock/x',
             '/dev/shm/x', {PROJECT + "/x"!r}, '/etc/x']:
    try:
        open(path, 'w').write('x')
    except OSError:
        pass
    else:
        raise AssertionError('wrote ' + path)
assert os.listdir('.') == [], os.listdir('.')
open('left-behind', 'w').write('x')
try:
    open('big', 'wb').write(b'x' * (3 * 2**20))
except OSError as e:
    assert e.errno == errno.EFBIG, e
else:
    raise AssertionError('max_file_mb not enforced')
"""
    limits = Limits(tmp_mb=4, max_file_mb=2)
    first, second = sandbox.run(program, limits), sandbox.run(program, limits)
    for outcome in (first, second):  # the second run sees an empty directory again
        assert outcome.verdict is Verdict.passed, f"{outcome.detail}\n{outcome.output}"


def test_tmp_size_is_bounded(sandbox: Sandbox) -> None:
    if sandbox.kind != "nsjail":
        pytest.skip(
            "firejail's seccomp forbids mount: programs share the jail's private /tmp (emptied after "
            "each), bounded by max_file_mb per file and the jail's memory, not by tmp_mb"
        )
    program = """
import errno
try:
    for i in range(5):
        open('f%d' % i, 'wb').write(b'x' * (3 * 2**19))
except OSError as e:
    assert e.errno == errno.ENOSPC, e
else:
    raise AssertionError('tmp_mb not enforced')
"""
    outcome = sandbox.run(program, Limits(tmp_mb=4, max_file_mb=2))
    assert outcome.verdict is Verdict.passed, f"{outcome.detail}\n{outcome.output}"


def test_threads_do_not_outlive_the_check(sandbox: Sandbox, first: Problem) -> None:
    completion = (first.payload["canonical_solution"] or "") + (
        "import threading, time\n"
        "def linger():\n    time.sleep(100)\n"
        "threading.Thread(target=linger).start()\n"
    )
    outcome = sandbox.run(he(first, completion))
    assert outcome.verdict is Verdict.passed, outcome.detail  # (waiting for the thread would be a timeout)


def test_daemonised_grandchild_is_gone_after_the_verdict(sandbox: Sandbox) -> None:
    marker = new_marker()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        program = f"""
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        code = 'import socket, time; time.sleep(1.5); socket.create_connection(("127.0.0.1", {port}), 2)'
        os.execv(sys.executable, [sys.executable, '-c', code, {marker!r}])
    os._exit(0)
os.wait()
"""
        outcome = sandbox.run(program)
        assert outcome.verdict is Verdict.passed, f"{outcome.detail}\n{outcome.output}"
        assert processes_with(marker) == []
        time.sleep(2.0)  # past the moment it meant to act
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert processes_with(marker) == []


def test_runs_as_an_unprivileged_user_on_the_host(sandbox: Sandbox) -> None:
    outcome = sandbox.run("import os\nprint(os.getuid())\n")
    assert outcome.verdict is Verdict.passed
    uids = set()
    for pid in sandbox.pool.backend.worker_pids():
        for child in descendants(pid):
            try:
                status = Path(f"/proc/{child}/status").read_text()
            except OSError:
                continue
            if Path(f"/proc/{child}/comm").read_text().startswith("python"):
                uids |= {
                    int(x)
                    for line in status.splitlines()
                    if line.startswith("Uid:")
                    for x in line.split()[1:]
                }
    assert uids and 0 not in uids, uids


# --- pool life cycle ------------------------------------------------------------------------


def test_close_kills_what_runs_and_cancel_kills_its_program() -> None:
    async def main() -> Outcome:
        pool = SandboxPool(workers=2)
        await pool.start()
        try:
            sleeper = "import time\ntime.sleep(100)\n"
            closed = asyncio.ensure_future(pool.run(sleeper))
            cancelled = asyncio.ensure_future(pool.run(sleeper))
            await asyncio.sleep(0.5)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            outcome = await asyncio.wait_for(pool.run("pass"), 30)  # the cancelled one's worker is replaced
            assert outcome.verdict is Verdict.passed  # exec returned
        finally:
            await pool.close()
        return await closed

    outcome = uvloop.run(main())
    assert (outcome.verdict, outcome.detail) == (Verdict.infra_error, "sandbox closed while the program ran")
    assert not [pid for pid in processes_with("engine-sandbox-nsjail-") if PROJECT.encode() in _cmdline(pid)]


def test_recycles_workers_and_keeps_verdicts(first: Problem) -> None:
    from sandbox.forkserver.backend import ForkServerBackend
    from sandbox.launchers.nsjail import NsjailLauncher

    async def main() -> tuple[list[Outcome], int]:
        backend = ForkServerBackend(NsjailLauncher(), recycle_after=3)
        async with SandboxPool(workers=1, backend=backend) as pool:
            outcomes = [
                await pool.run(he(first, first.payload["canonical_solution"] or "")) for _ in range(7)
            ]
            return outcomes, backend.restarts

    outcomes, restarts = uvloop.run(main())
    assert [o.verdict for o in outcomes] == [Verdict.passed] * 7 and restarts >= 2


def test_start_fails_with_one_line_when_nsjail_is_missing() -> None:
    from sandbox.forkserver.backend import ForkServerBackend
    from sandbox.launchers.nsjail import NsjailLauncher

    async def main() -> None:
        async with SandboxPool(
            workers=1, backend=ForkServerBackend(NsjailLauncher(nsjail_path="/nonexistent/nsjail"))
        ):
            pass

    with pytest.raises(SandboxError) as caught:
        uvloop.run(main())
    assert "/nonexistent/nsjail" in str(caught.value) and "\n" not in str(caught.value)


def test_none_backend_runs_programs(first: Problem) -> None:
    async def main() -> list[Outcome]:
        async with SandboxPool(workers=1, backend="none") as pool:
            return [
                await pool.run(he(first, first.payload["canonical_solution"] or "")),
                await pool.run(he(first, "    return 1\n")),
            ]

    passed, failed = uvloop.run(main())
    assert (passed.verdict, failed.verdict, passed.backend) == (Verdict.passed, Verdict.failed, "none")
