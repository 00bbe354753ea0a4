"""sandbox/ through the real nsjail: correctness on HumanEval, hostile programs, isolation.

Every hostile program runs under a unique label, which nsjail and the harness carry in their
argv; afterwards no process on the host may still carry it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import uvloop

from engine.dataset import load_problems
from engine.errors import SandboxError
from engine.records import Problem
from sandbox import Limits, Outcome, SandboxPool, Verdict, humaneval_program
from sandbox.cgroups import own_memory_cgroup
from sandbox.jail import NsjailBackend

log = logging.getLogger(__name__)

FAST = Limits(timeout_s=1.0)  # for programs expected to time out: keeps the suite short
PREFIX = str(Path(sys.base_prefix).resolve())


@pytest.fixture(scope="module", autouse=True)
def nothing_left_on_the_host() -> Iterator[None]:
    """After all these tests: no staging dir or memory cgroup of this process remains."""
    yield
    mine = f"engine-sandbox-{os.getpid()}-*"
    own_cgroup = own_memory_cgroup(Path("/proc/self/cgroup").read_text()) or "/"
    left = [*Path("/tmp").glob(mine), *Path("/sys/fs/cgroup/memory", own_cgroup.lstrip("/")).glob(mine)]
    assert left == [], f"left on the host: {left}"


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return load_problems()


@pytest.fixture(scope="module")
def first(problems: list[Problem]) -> Problem:
    return problems[0]  # HumanEval/0, has_close_elements


def run_pool(body: Callable[[SandboxPool], Awaitable[object]], *, limits: Limits = Limits()) -> object:
    async def main() -> object:
        async with SandboxPool(workers=2, limits=limits) as pool:
            return await body(pool)

    return uvloop.run(main())


def run_programs(programs: Sequence[str], labels: Sequence[str], *, limits: Limits = Limits()) -> list[Outcome]:
    async def body(pool: SandboxPool) -> list[Outcome]:
        return await asyncio.gather(*(pool.run(p, label=label) for p, label in zip(programs, labels)))

    return run_pool(body, limits=limits)  # type: ignore[return-value]


def run_one(program: str, *, limits: Limits = Limits()) -> tuple[Outcome, str]:
    label = new_label()
    [outcome] = run_programs([program], [label], limits=limits)
    return outcome, label


def new_label() -> str:
    return f"sandbox-test-{uuid.uuid4().hex[:12]}"


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains `marker`."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry.name))
    return found


def assert_nothing_left(marker: str, grace_s: float = 1.0) -> None:
    """No process carries `marker`. The grace covers a jail already SIGKILLed but not yet reaped."""
    deadline = time.monotonic() + grace_s
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert left == [], f"processes carrying {marker} survived the verdict"


def assert_passed(outcome: Outcome) -> None:
    assert outcome.verdict is Verdict.passed, f"{outcome.verdict.value}: {outcome.detail}\n{outcome.output}"


# --- correctness on HumanEval ----------------------------------------------------------------


def test_all_canonical_solutions_pass(problems: list[Problem]) -> None:
    programs = [humaneval_program(p.prompt, p.canonical_solution or "", p.test, p.entry_point) for p in problems]
    started = time.monotonic()
    outcomes = run_programs(programs, [p.task_id for p in problems])
    elapsed = time.monotonic() - started
    log.info("%d canonical solutions, 2 workers: %.2f s, %.1f samples/s (includes pool start)",
             len(problems), elapsed, len(problems) / elapsed)  # fmt: skip
    failures = {p.task_id: f"{o.verdict.value}: {o.detail}" for p, o in zip(problems, outcomes) if not o.passed}
    assert len(problems) == 164 and failures == {}
    assert all(o.backend == "nsjail" and o.limits == Limits() for o in outcomes)


def test_return_none_fails_everywhere(problems: list[Problem]) -> None:
    # Checked: no HumanEval problem accepts None, so every one of the 164 must fail.
    programs = [humaneval_program(p.prompt, "    return None\n", p.test, p.entry_point) for p in problems]
    outcomes = run_programs(programs, [p.task_id for p in problems])
    passed = [p.task_id for p, o in zip(problems, outcomes) if o.passed]
    assert passed == []
    assert collections.Counter(o.verdict for o in outcomes) == {Verdict.failed: 164}


# --- nothing but check() returning is a pass ---------------------------------------------------

# Completions for HumanEval/0 that return a wrong answer and then try to end the program in a way
# a harness trusting exit status 0 (or output) would count as a pass.
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
    "child kills parent and group": (
        "    return None\nimport os, time\nif os.fork() == 0:\n    os.kill(os.getppid(), 9)\n    os.killpg(0, 9)\n"
        "    os._exit(0)\ntime.sleep(0.2)\n"
    ),
    "fake pass markers on stdout and stderr": (
        "    return None\nimport sys\nprint('passed')\n"
        "print('{\"event\": \"passed\", \"nonce\": \"' + '0' * 32 + '\"}')\n"
        "sys.stderr.write('{\"event\": \"passed\"}\\nPASSED\\n')\nsys.stdout.flush()\n"
    ),
    "forged pass records on every fd, then os._exit(0)": (
        "    return None\nimport os\nfor fd in range(3, 64):\n    try:\n"
        "        os.write(fd, b'{\"event\": \"passed\", \"nonce\": \"' + b'0' * 32 + b'\"}\\n')\n"
        "    except OSError:\n        pass\nos._exit(0)\n"
    ),
    "nonce hunted in frames, then forged": (
        "    return None\nimport os, re, sys\nguesses = set()\nframe = sys._getframe()\nwhile frame:\n"
        "    for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):\n"
        "        if isinstance(value, (str, bytes)):\n"
        "            text = value if isinstance(value, str) else value.decode('latin-1')\n"
        "            guesses.update(re.findall('[0-9a-f]{32}', text))\n"
        "    frame = frame.f_back\nfor fd in range(3, 64):\n    for guess in guesses:\n        try:\n"
        "            os.write(fd, ('{\"event\": \"passed\", \"nonce\": \"%s\"}\\n' % guess).encode())\n"
        "        except OSError:\n            pass\nos._exit(0)\n"
    ),
}  # fmt: skip


@pytest.mark.parametrize("completion", NOT_PASSES.values(), ids=NOT_PASSES.keys())
def test_exits_and_forgeries_never_pass(first: Problem, completion: str) -> None:
    outcome, label = run_one(humaneval_program(first.prompt, completion, first.test, first.entry_point))
    assert outcome.verdict is Verdict.failed, f"{outcome.verdict.value}: {outcome.detail}\n{outcome.output}"
    assert_nothing_left(label)


def test_failure_details(first: Problem) -> None:
    details = {
        "    return None\n": "AssertionError",
        "    return x\n": "NameError: name 'x' is not defined",
        "    import os\n    os._exit(0)\n": "exited without finishing check() (exit status 0)",
        "    raise SystemExit(3)\n": "SystemExit: 3",
    }
    programs = [humaneval_program(first.prompt, c, first.test, first.entry_point) for c in details]
    outcomes = run_programs(programs, [new_label() for _ in programs])
    assert [o.detail for o in outcomes] == list(details.values())


# --- verdict classes --------------------------------------------------------------------------


def test_infinite_loop_times_out_and_the_pool_keeps_working(first: Problem) -> None:
    canonical = humaneval_program(first.prompt, first.canonical_solution or "", first.test, first.entry_point)
    label = new_label()

    async def body(pool: SandboxPool) -> list[Outcome]:
        looping = await pool.run("while True:\n    pass\n", label=label)
        # nsjail, killed, could not remove its per-jail cgroup: the backend must have done so.
        assert _jail_cgroups(pool) == []
        return [looping, *await asyncio.gather(*(pool.run(canonical) for _ in range(4)))]

    looping, *after = run_pool(body, limits=FAST)  # type: ignore[misc]
    assert (looping.verdict, looping.detail) == (Verdict.timeout, "wall-clock limit 1.0 s")
    assert 1.0 <= looping.wall_s < 5.0
    assert [o.verdict for o in after] == [Verdict.passed] * 4
    assert_nothing_left(label)


def _jail_cgroups(pool: SandboxPool) -> list[str]:
    parent = pool.backend.layout.memory_cgroup_parent  # type: ignore[attr-defined]
    return [] if parent is None else [p.name for p in Path("/sys/fs/cgroup/memory", parent).glob("NSJAIL.*")]


CLASSES = {
    "sleep(100)": ("import time\ntime.sleep(100)\n", Verdict.timeout, "wall-clock limit 1.0 s"),
    "bytearray(10**10)": ("x = bytearray(10**10)\n", Verdict.oom, "MemoryError"),
    "append MBs until full": ("chunks = []\nwhile True:\n    chunks.append(b'x' * 2**20)\n", Verdict.oom,
                              "MemoryError"),
    "deep recursion": ("def f(n):\n    return f(n + 1)\nf(0)\n", Verdict.failed,
                       "RecursionError: maximum recursion depth exceeded"),
    "ctypes segfault": ("import ctypes\nctypes.string_at(0)\n", Verdict.error, "killed by SIGSEGV"),
    "syntax error": ("def f(:\n    pass\n", Verdict.failed, "SyntaxError: invalid syntax (<program>, line 1)"),
    "os.abort()": ("import os\nos.abort()\n", Verdict.error, "killed by SIG"),  # SIGABRT, or SIGSEGV as pid 1
}  # fmt: skip


@pytest.mark.parametrize(("program", "verdict", "detail"), CLASSES.values(), ids=CLASSES.keys())
def test_verdict_classes(program: str, verdict: Verdict, detail: str) -> None:
    # A short clock only where a timeout is expected; a loaded machine needs slack for the others.
    timeout_s = 1.0 if verdict is Verdict.timeout else 5.0
    outcome, label = run_one(program, limits=Limits(timeout_s=timeout_s, memory_mb=512))
    assert outcome.verdict is verdict, f"{outcome.verdict.value}: {outcome.detail}\n{outcome.output}"
    assert outcome.detail.startswith(detail)
    assert_nothing_left(label)


def test_memory_cap_covers_the_whole_jail() -> None:
    """Four processes of 300 MB each fit their own 512 MB address space but not the jail's 1024 MB:
    the OOM killer must take at least one (the program passes when it did)."""
    program = """
import os, time
children = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        hold = b'x' * (300 * 2**20)
        time.sleep(1)
        os._exit(0)
    children.append(pid)
killed = [os.WIFSIGNALED(os.waitpid(pid, 0)[1]) for pid in children]
assert any(killed), killed
"""

    async def body(pool: SandboxPool) -> Outcome:
        if pool.backend.layout.memory_cgroup_parent is None:  # type: ignore[attr-defined]
            pytest.skip("no cgroup v1 memory controller here")
        return await pool.run(program, label=new_label())

    assert_passed(run_pool(body, limits=Limits(memory_mb=512)))  # type: ignore[arg-type]


# --- isolation ----------------------------------------------------------------------------------


def test_jail_sees_only_the_interpreter_files() -> None:
    top = Path(PREFIX).parts[1]
    library_tops = {Path(p).parts[1] for p in ("/lib", "/lib64", "/usr/lib", "/usr/lib64") if os.path.lexists(p)}
    expected_root = sorted({"proc", "tmp", top} | library_tops)
    # Each directory above the prefix (e.g. /root, /root/.pyenv) shows only the way down to it.
    above = [str(p) for p in reversed(Path(PREFIX).parents) if str(p) != "/"] if top != "usr" else []
    below = [*above[1:], PREFIX]
    site_packages = os.path.join(PREFIX, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")
    program = f"""
import os
for path in ['/etc/shadow', '/etc/passwd', '/root/.bashrc', '/root/.profile', '/work/main/pyproject.toml',
             '/work/shared/DESIGN.md', {os.path.abspath(__file__)!r}, '/proc/kcore']:
    try:
        open(path, 'rb').read(1)
    except OSError:
        pass
    else:
        raise AssertionError('read ' + path)
assert sorted(os.listdir('/')) == {expected_root!r}, os.listdir('/')
for parent, child in zip({above!r}, {below!r}):
    assert os.listdir(parent) == [os.path.basename(child)], (parent, os.listdir(parent))
assert os.listdir({site_packages!r}) == []
assert not any(os.path.exists(p) for p in ['/work', '/home', '/dev', '/etc', '/sys', '/var'])
assert (os.getuid(), os.geteuid(), os.getgid()) == (65534, 65534, 65534)
assert os.getcwd() == '/tmp'
"""
    outcome, label = run_one(program)
    assert_passed(outcome)
    assert_nothing_left(label)


def test_engine_environment_is_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = uuid.uuid4().hex
    monkeypatch.setenv("ENGINE_TEST_SECRET", secret)
    program = f"""
import os
# Python itself sets LC_CTYPE when it coerces the C locale (PEP 538); nothing else may be there.
assert set(os.environ) <= {{'LC_CTYPE'}}, dict(os.environ)
pids = [name for name in os.listdir('/proc') if name.isdigit()]
assert '1' in pids and len(pids) <= 2, pids  # only the jail's own pid namespace
for pid in pids + ['self']:
    for name in ('environ', 'cmdline'):
        try:
            data = open('/proc/%s/%s' % (pid, name), 'rb').read()
        except OSError:
            continue
        assert {secret!r}.encode() not in data, (pid, name)
"""
    outcome, label = run_one(program)
    assert_passed(outcome)
    assert_nothing_left(label)


def test_no_network_but_lo_and_no_way_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        program = f"""
import socket
assert [name for _, name in socket.if_nameindex()] == ['lo'], socket.if_nameindex()
for address in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError:
        pass
    else:
        raise AssertionError('connected to %s' % (address,))
"""
        outcome, label = run_one(program)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert_passed(outcome)
    assert_nothing_left(label)


def test_no_namespaces_mounts_or_ptrace() -> None:
    program = """
import ctypes, errno, os, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
for name, call in [('unshare(NEWUSER)', lambda: libc.unshare(CLONE_NEWUSER)),
                   ('unshare(NEWNS)', lambda: libc.unshare(CLONE_NEWNS)),
                   ('clone(NEWUSER)', lambda: libc.syscall(56, CLONE_NEWUSER | 17, 0, 0, 0, 0)),
                   ('mount', lambda: libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)),
                   ('ptrace', lambda: libc.ptrace(0, 0, 0, 0))]:
    assert call() == -1 and ctypes.get_errno() == errno.EPERM, name
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
    outcome, label = run_one(program)
    assert_passed(outcome)
    assert_nothing_left(label)


def test_writes_only_in_a_bounded_tmp() -> None:
    program = f"""
import errno, os
for path in ['/x', '/usr/lib/x', {PREFIX + "/x"!r}, '/proc/x', '/root/x', '/lib/x']:
    try:
        open(path, 'w').write('x')
    except OSError:
        pass
    else:
        raise AssertionError('wrote ' + path)
try:
    open('/tmp/big', 'wb').write(b'x' * (3 * 2**20))
except OSError as e:
    assert e.errno == errno.EFBIG, e
else:
    raise AssertionError('max_file_mb not enforced')
try:
    for i in range(5):
        open('/tmp/f%d' % i, 'wb').write(b'x' * (3 * 2**19))
except OSError as e:
    assert e.errno == errno.ENOSPC, e
else:
    raise AssertionError('tmp_mb not enforced')
"""
    outcome, label = run_one(program, limits=Limits(tmp_mb=4, max_file_mb=2))
    assert_passed(outcome)
    assert_nothing_left(label)


def test_runs_as_nobody_outside_too() -> None:
    label = new_label()

    async def body(pool: SandboxPool) -> tuple[Outcome, list[str]]:
        task = asyncio.ensure_future(pool.run("import time\ntime.sleep(1.5)\n", label=label))
        uid_lines: list[str] = []
        while not task.done() and not uid_lines:
            await asyncio.sleep(0.05)
            for pid in _interpreters(label):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                uid_lines += [line for line in status.splitlines() if line.startswith(("Uid:", "Gid:"))]
        return await task, uid_lines

    outcome, uid_lines = run_pool(body)  # type: ignore[misc]
    assert_passed(outcome)
    assert uid_lines and all(line.split()[1:] == ["65534"] * 4 for line in uid_lines), uid_lines


def test_huge_output_is_truncated_and_memory_stays_bounded() -> None:
    program = "import sys\nchunk = 'x' * (2**16 - 1) + '\\n'\nfor _ in range(1600):\n    sys.stdout.write(chunk)\n" \
              "sys.stderr.write('the end\\n')\n"  # fmt: skip
    Path("/proc/self/clear_refs").write_text("5")  # reset this process's peak RSS
    rss_before = _status_kb("VmRSS")
    outcome, label = run_one(program, limits=Limits(max_output_bytes=4096))
    peak_growth_mb = (_status_kb("VmHWM") - rss_before) / 1024
    assert_passed(outcome)
    assert outcome.output.startswith(f"[... {1600 * 2**16 + 8 - 4096} bytes dropped ...]\n")
    assert outcome.output.endswith("x\nthe end\n") and len(outcome.output) < 4096 + 100
    assert peak_growth_mb < 30, f"the engine grew by {peak_growth_mb:.0f} MB reading 100 MB of output"
    assert_nothing_left(label)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def test_fork_bomb_ends_with_nothing_left() -> None:
    program = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    outcome, label = run_one(program, limits=FAST)
    assert outcome.verdict in (Verdict.timeout, Verdict.failed), outcome.detail
    assert_nothing_left(label)


def test_daemonised_grandchild_is_gone_after_the_verdict() -> None:
    marker = new_label()
    program = f"""
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(100)', {marker!r}])
    os._exit(0)
os.wait()
"""
    outcome, label = run_one(program)
    assert_passed(outcome)
    assert_nothing_left(marker)
    assert_nothing_left(label)


# --- pool life cycle ------------------------------------------------------------------------


def test_close_kills_what_runs_and_cancel_kills_its_jail() -> None:
    closed_label, cancelled_label = new_label(), new_label()

    async def main() -> Outcome:
        pool = SandboxPool(workers=2)
        await pool.start()
        try:
            sleeper = "import time\ntime.sleep(100)\n"
            closed = asyncio.ensure_future(pool.run(sleeper, label=closed_label))
            cancelled = asyncio.ensure_future(pool.run(sleeper, label=cancelled_label))
            while not (_interpreters(closed_label) and _interpreters(cancelled_label)):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # the harness says "ready" a few ms after the interpreter starts
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            assert_nothing_left(cancelled_label)
        finally:
            await pool.close()
        return await closed

    outcome = uvloop.run(main())
    assert (outcome.verdict, outcome.detail) == (Verdict.error, "sandbox closed while the program ran")
    assert_nothing_left(closed_label)


def test_works_on_plain_asyncio_and_cleans_up_the_host(first: Problem) -> None:
    canonical = humaneval_program(first.prompt, first.canonical_solution or "", first.test, first.entry_point)

    async def main() -> tuple[list[Outcome], list[Path]]:
        async with SandboxPool(workers=2) as pool:
            layout = pool.backend.layout  # type: ignore[attr-defined]
            created = [Path(layout.stage_dir)]
            if layout.memory_cgroup_parent is not None:
                created.append(Path("/sys/fs/cgroup/memory", layout.memory_cgroup_parent))
            assert all(path.is_dir() for path in created)
            outcomes = await asyncio.gather(pool.run(canonical), pool.run("while True: pass", limits=FAST))
        return outcomes, created

    (passed, timed_out), created = asyncio.run(main())
    assert (passed.verdict, timed_out.verdict) == (Verdict.passed, Verdict.timeout)
    assert [path for path in created if path.exists()] == []


def _interpreters(marker: str) -> list[int]:
    """The jailed interpreters among the processes carrying `marker` (nsjail carries it too)."""
    found = []
    for pid in processes_with(marker):
        try:
            if Path(f"/proc/{pid}/comm").read_text().startswith("python"):
                found.append(pid)
        except OSError:
            pass
    return found


def test_jail_setup_failure_is_a_sandbox_error_verdict() -> None:
    async def body(pool: SandboxPool) -> Outcome:
        backend: NsjailBackend = pool.backend  # type: ignore[assignment]
        good = backend.layout
        assert good is not None
        backend._layout = replace(good, library_dirs=(*good.library_dirs, "/nonexistent-lib"))
        try:
            return await pool.run("pass")
        finally:
            backend._layout = good

    outcome: Outcome = run_pool(body)  # type: ignore[assignment]
    assert outcome.verdict is Verdict.error
    assert outcome.detail.startswith("sandbox fault: nsjail: ") and "/nonexistent-lib" in outcome.detail


def test_start_fails_with_one_line_when_nsjail_is_missing() -> None:
    async def main() -> None:
        async with SandboxPool(workers=1, backend=NsjailBackend(nsjail_path="/nonexistent/nsjail")):
            pass

    with pytest.raises(SandboxError) as caught:
        uvloop.run(main())
    assert "/nonexistent/nsjail" in str(caught.value) and "\n" not in str(caught.value)
