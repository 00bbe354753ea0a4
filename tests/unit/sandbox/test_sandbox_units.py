"""sandbox/ without a jail: the verdict table row by row, the parsers, the command line, the pool."""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import Limits, Outcome, SandboxPool, Verdict, check_program
from sandbox.capture import TailBuffer
from sandbox.cgroups import own_cgroups, own_memory_cgroup
from sandbox.launchers.nsjail import JailLayout, nsjail_command
from sandbox.protocol import MAX_LINE_BYTES, Failure, StatusParser
from sandbox.verdicts import KillReason, Observation, decide, load_sensitive, signal_name

NONCE = "0123456789abcdef0123456789abcdef"
ASSERTION = Failure(oom=False, type="AssertionError", message="")
NAME_ERROR = Failure(oom=False, type="NameError", message="name 'x' is not defined")
OOM = Failure(oom=True, type="MemoryError", message="")

# (row, observation, verdict, detail) -- one row per line of the table in sandbox/verdicts.py
TABLE = [
    (
        "pass record",
        Observation(ready=True, passed_record=True, exit_status=0),
        Verdict.passed,
        "check() returned",
    ),
    (
        "pass record wins over a late timer",
        Observation(ready=True, passed_record=True, killed_by=KillReason.timeout),
        Verdict.passed,
        "check() returned",
    ),
    (
        "pass record without ready is impossible: no program ran",
        Observation(passed_record=True),
        Verdict.infra_error,
        "sandbox fault: jail ended before the harness was ready (no exit status)",
    ),
    (
        "nsjail could not set up the jail",
        Observation(sandbox_fault="nsjail: Failed to mount", exit_status=255),
        Verdict.infra_error,
        "sandbox fault: nsjail: Failed to mount",
    ),
    (
        "harness never said ready",
        Observation(killed_by=KillReason.startup, startup_timeout_s=10),
        Verdict.infra_error,
        "sandbox fault: harness not ready after 10.0 s",
    ),
    (
        "jail ended before ready",
        Observation(exit_status=1),
        Verdict.infra_error,
        "sandbox fault: jail ended before the harness was ready (exit status 1)",
    ),
    (
        "pool closed before ready",
        Observation(killed_by=KillReason.closed),
        Verdict.infra_error,
        "sandbox fault: pool closed before the program started",
    ),
    (
        "our timer fired",
        Observation(ready=True, killed_by=KillReason.timeout, signal=9, timeout_s=3.0),
        Verdict.timeout,
        "wall-clock limit 3.0 s",
    ),
    (
        "timer beats a (possibly forged) failure record",
        Observation(ready=True, killed_by=KillReason.timeout, failure=ASSERTION, timeout_s=1),
        Verdict.timeout,
        "wall-clock limit 1.0 s",
    ),
    (
        "pool closed while running",
        Observation(ready=True, killed_by=KillReason.closed, signal=9),
        Verdict.infra_error,
        "sandbox closed while the program ran",
    ),
    (
        "the worker died mid-run",
        Observation(ready=True, worker_fault="the worker died while the program ran"),
        Verdict.infra_error,
        "sandbox fault: the worker died while the program ran",
    ),
    (
        "the worker stopped answering",
        Observation(ready=True, killed_by=KillReason.unresponsive),
        Verdict.infra_error,
        "sandbox fault: the worker stopped answering",
    ),
    (
        "worker fault beats a failure record",
        Observation(ready=True, worker_fault="gone", failure=ASSERTION),
        Verdict.infra_error,
        "sandbox fault: gone",
    ),
    (
        "CPU-time limit record",
        Observation(ready=True, cpu_limit=True, cpu_time_s=0.25, failure=ASSERTION),
        Verdict.timeout,
        "CPU-time limit 0.25 s",
    ),
    (
        "killed by SIGPROF",
        Observation(ready=True, signal=signal.SIGPROF, cpu_time_s=0.25),
        Verdict.timeout,
        "CPU-time limit 0.25 s",
    ),
    (
        "RLIMIT_CPU backstop",
        Observation(ready=True, signal=signal.SIGXCPU),
        Verdict.timeout,
        "cpu-time limit (SIGXCPU)",
    ),
    (
        "nsjail time-limit backstop",
        Observation(ready=True, signal=9, jail_time_limit=True),
        Verdict.timeout,
        "nsjail time limit",
    ),
    (
        "SIGKILL under a memory cgroup: the OOM killer",
        Observation(ready=True, signal=9, memory_cap=True),
        Verdict.oom,
        "killed by SIGKILL at the jail's memory limit",
    ),
    (
        "SIGKILL without a memory cgroup",
        Observation(ready=True, signal=9),
        Verdict.error,
        "killed by SIGKILL",
    ),
    ("segfault", Observation(ready=True, signal=signal.SIGSEGV), Verdict.error, "killed by SIGSEGV"),
    (
        "signal beats a record written before it",
        Observation(ready=True, signal=signal.SIGSEGV, failure=ASSERTION),
        Verdict.error,
        "killed by SIGSEGV",
    ),
    ("MemoryError record", Observation(ready=True, failure=OOM, exit_status=1), Verdict.oom, "MemoryError"),
    (
        "assertion",
        Observation(ready=True, failure=ASSERTION, exit_status=1),
        Verdict.failed,
        "AssertionError",
    ),
    (
        "exception with a message",
        Observation(ready=True, failure=NAME_ERROR, exit_status=1),
        Verdict.failed,
        "NameError: name 'x' is not defined",
    ),
    (
        "SystemExit(0) is a failure",
        Observation(ready=True, failure=Failure(False, "SystemExit", "0"), exit_status=1),
        Verdict.failed,
        "SystemExit: 0",
    ),
    (
        "MemoryError only in the output",
        Observation(ready=True, output_memory_error=True, exit_status=1),
        Verdict.oom,
        "MemoryError (in the output; no record from the harness)",
    ),
    (
        "forged pass record, then exit 0",
        Observation(ready=True, forged_pass=True, exit_status=0),
        Verdict.failed,
        "pass record with a wrong nonce (forged)",
    ),
    (
        "os._exit(0): exit status 0 is not a pass",
        Observation(ready=True, exit_status=0),
        Verdict.failed,
        "exited without finishing check() (exit status 0)",
    ),
    (
        "nsjail's ambiguous 255 after ready",
        Observation(ready=True, exit_status=255),
        Verdict.failed,
        "exited without finishing check() (exit status 255)",
    ),
    (
        "nsjail's ambiguous 1 after ready",
        Observation(ready=True, exit_status=1),
        Verdict.failed,
        "exited without finishing check() (exit status 1)",
    ),
]


@pytest.mark.parametrize(
    ("observation", "verdict", "detail"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE]
)
def test_decision_table(observation: Observation, verdict: Verdict, detail: str) -> None:
    assert decide(observation) == (verdict, detail)


@given(
    ready=st.booleans(),
    forged=st.booleans(),
    exit_status=st.none() | st.integers(0, 255),
    sig=st.none() | st.sampled_from(list(signal.Signals)),
    killed=st.none() | st.sampled_from(list(KillReason)),
    failure=st.none() | st.sampled_from([ASSERTION, OOM]),
    fault=st.none() | st.just("nsjail: boom"),
    memory_cap=st.booleans(),
    output_memory_error=st.booleans(),
)
def test_nothing_but_the_nonce_record_passes(
    ready, forged, exit_status, sig, killed, failure, fault, memory_cap, output_memory_error
) -> None:
    observation = Observation(
        ready=ready,
        forged_pass=forged,
        exit_status=exit_status,
        signal=sig,
        killed_by=killed,
        failure=failure,
        sandbox_fault=fault,
        memory_cap=memory_cap,
        output_memory_error=output_memory_error,
    )
    verdict, detail = decide(observation)
    assert verdict is not Verdict.passed
    assert detail and "\n" not in detail


@given(
    killed=st.none() | st.sampled_from(list(KillReason)),
    ready=st.booleans(),
    passed=st.booleans(),
    cpu_used=st.none() | st.floats(0, 100),
    cpu_limit=st.none() | st.floats(0.01, 50),
    wall=st.floats(0.01, 50),
    sig=st.none() | st.sampled_from([signal.SIGKILL, signal.SIGPROF]),
)
def test_only_a_wall_clock_timeout_under_its_cpu_limit_is_load_sensitive(
    killed, ready, passed, cpu_used, cpu_limit, wall, sig
) -> None:
    """Invariant: load-sensitive <=> the verdict is a wall-clock timeout and the CPU the sample used
    (all its processes) is unknown or below its CPU limit (the wall limit when it has none): a
    CPU overrun, and every other verdict, is final at once."""
    obs = Observation(
        ready=ready,
        passed_record=passed,
        killed_by=killed,
        signal=sig,
        cpu_used_s=cpu_used,
        cpu_time_s=cpu_limit,
        timeout_s=wall,
    )
    wall_clock_timeout = decide(obs) == (Verdict.timeout, f"wall-clock limit {wall} s")
    under = cpu_used is None or cpu_used < (cpu_limit or wall)
    assert load_sensitive(obs) is (wall_clock_timeout and under)


def test_load_sensitive_at_the_ends() -> None:
    timeout = Observation(ready=True, killed_by=KillReason.timeout, timeout_s=3.0, cpu_time_s=1.0)
    assert load_sensitive(replace(timeout, cpu_used_s=0.0)) and load_sensitive(
        replace(timeout, cpu_used_s=0.999)
    )
    assert not load_sensitive(replace(timeout, cpu_used_s=1.0))  # exactly the limit: used it all
    assert load_sensitive(timeout)  # not measured: cannot rule load out
    assert not load_sensitive(replace(timeout, cpu_used_s=5.0, cpu_time_s=None)) and load_sensitive(
        replace(timeout, cpu_used_s=2.9, cpu_time_s=None)
    )
    cpu_overrun = Observation(ready=True, signal=signal.SIGPROF, cpu_time_s=1.0, cpu_used_s=0.1)
    assert decide(cpu_overrun)[0] is Verdict.timeout and not load_sensitive(cpu_overrun)
    sensitive = Outcome(
        Verdict.timeout, "wall-clock limit 3.0 s", 3.0, "x", Limits(), "", load_sensitive=True
    )
    infra = Outcome(Verdict.infra_error, "sandbox fault: x", 0.0, "x", Limits(), "")
    assert not sensitive.final and not infra.final
    assert replace(sensitive, load_sensitive=False).final and not infra.passed


def test_verdict_values() -> None:
    assert [v.value for v in Verdict] == ["passed", "failed", "timeout", "oom", "error", "infra_error"]
    assert Verdict("oom") is Verdict.oom and Verdict.oom == "oom" and str(Verdict.oom) == "oom"


@given(st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63)))
def test_a_signal_is_named_by_its_name_or_else_by_its_number(number: int | None) -> None:
    """Invariant: the platform's name when it has one, "signal N" for anything else (None too)."""
    names = {s.value: s.name for s in signal.Signals}
    expected = names[number] if number in names else f"signal {number}"
    assert signal_name(number) == expected


def test_signal_names_at_the_ends() -> None:
    assert [signal_name(n) for n in (None, 0, 9, 15, 10**6)] == [
        "signal None",
        "signal 0",
        "SIGKILL",
        "SIGTERM",
        "signal 1000000",
    ]


# --- status records -------------------------------------------------------------------------


def record(**fields: object) -> bytes:
    return json.dumps(fields).encode() + b"\n"


def test_status_parser_pass_with_our_nonce() -> None:
    parser = StatusParser(NONCE)
    parser.feed(record(event="ready") + record(event="passed", nonce=NONCE))
    assert parser.ready and parser.passed and not parser.forged_pass


@pytest.mark.parametrize("nonce", ["", "0" * 32, NONCE.upper(), NONCE + "0", 12345, None])
def test_status_parser_wrong_nonce_is_forged(nonce: object) -> None:
    parser = StatusParser(NONCE)
    parser.feed(record(event="ready") + record(event="passed", nonce=nonce))
    assert not parser.passed and parser.forged_pass


def test_status_parser_keeps_last_failure_and_ignores_junk() -> None:
    parser = StatusParser(NONCE)
    parser.feed(b"PASSED\nnot json\n[1,2]\n" + record(event="ready") + b"\x00\xff\n")
    parser.feed(record(event="failed", type="AssertionError", message="a\nb   c"))
    parser.feed(record(event="oom", type="MemoryError", message=""))
    assert parser.ready and not parser.passed
    assert parser.failure == Failure(oom=True, type="MemoryError", message="")
    parser.feed(record(event="failed", type=["odd"], message=7))
    assert parser.failure == Failure(oom=False, type="Exception", message="")


def test_status_parser_drops_overlong_lines_but_not_the_next_one() -> None:
    parser = StatusParser(NONCE)
    parser.feed(b"x" * (MAX_LINE_BYTES * 3))
    parser.feed(b"y" * 10 + b'", "event": "passed", "nonce": "' + NONCE.encode() + b'"}\n')
    assert not parser.passed
    parser.feed(record(event="passed", nonce=NONCE))
    assert parser.passed


@given(st.data())
def test_status_parser_same_facts_at_any_split(data: st.DataObject) -> None:
    stream = b"".join(
        [
            b"junk\n",
            record(event="ready"),
            b"x" * (MAX_LINE_BYTES + 5) + b"\n",
            record(event="failed", type="ValueError", message="m"),
            record(event="passed", nonce=NONCE),
        ]
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser = StatusParser(NONCE)
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        parser.feed(stream[start:end])
    assert (parser.ready, parser.passed, parser.forged_pass) == (True, True, False)
    assert parser.failure == Failure(oom=False, type="ValueError", message="m")


# --- bounded output -------------------------------------------------------------------------


def test_tail_buffer_keeps_the_tail_and_counts_the_rest() -> None:
    tail = TailBuffer(10)
    for chunk in (b"abc", b"defghijklmnop", b"", b"qr"):
        tail.feed(chunk)
    assert tail.total == 18 and tail.dropped == 8
    assert tail.text() == "[... 8 bytes dropped ...]\nijklmnopqr"
    assert TailBuffer(5).text() == ""


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(1, 40))
def test_tail_buffer_is_the_suffix(chunks: list[bytes], cap: int) -> None:
    tail = TailBuffer(cap)
    for chunk in chunks:
        tail.feed(chunk)
    whole = b"".join(chunks)
    assert bytes(tail._tail) == whole[-cap:] if whole else bytes(tail._tail) == b""
    assert len(tail._tail) <= cap


# --- nsjail's command line and log ----------------------------------------------------------

LAYOUT = JailLayout(
    nsjail="/opt/nsjail",
    python="/root/.pyenv/versions/3.11.7/bin/python3.11",
    prefix="/root/.pyenv/versions/3.11.7",
    hidden_dirs=("/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages",),
    library_dirs=("/usr/lib", "/usr/lib64"),
    library_links=(("/lib", "usr/lib"), ("/lib64", "usr/lib64")),
    stage_dir="/tmp/stage",
    unshare="/usr/bin/unshare",
    sh="/bin/sh",
    mount="/bin/mount",
)


def command(layout: JailLayout = LAYOUT) -> list[str]:
    return nsjail_command(layout, server_config="CONFIG", label="worker-1")


def options(argv: list[str]) -> list[tuple[str, str]]:
    """nsjail's (option, value) pairs, between nsjail and `--`."""
    jail = argv[argv.index("/opt/nsjail") + 2 : argv.index("--", argv.index("/opt/nsjail"))]
    flags = {"--iface_no_lo", "--disable_rlimits", "--proc_rw"}
    pairs, i = [], 0
    while i < len(jail):
        if jail[i] in flags:
            pairs.append((jail[i], ""))
            i += 1
        else:
            pairs.append((jail[i], jail[i + 1]))
            i += 2
    return pairs


def test_command_stages_the_prefix_then_execs_nsjail_once() -> None:
    argv = command()
    assert argv[:5] == ["/usr/bin/unshare", "--mount", "--propagation", "private", "--"]
    assert argv[9:13] == ["/root/.pyenv/versions/3.11.7", "/tmp/stage/python", "/bin/mount", "/opt/nsjail"]
    assert argv[13] == "-Mo"


def test_command_maps_an_unprivileged_id_inside_and_outside() -> None:
    opts = options(command())
    assert ("--user", "65534:65534:1") in opts and ("--group", "65534:65534:1") in opts
    assert not any(k in ("--user", "--group") and v.split(":")[1] == "0" for k, v in opts)
    dangerous = ("--keep_env", "-e", "--env", "--disable_clone_newnet", "-N", "--keep_caps", "--rw")
    assert all(k not in dangerous for k, _ in opts)


def test_command_mounts_only_what_the_interpreter_needs() -> None:
    opts = options(command())
    mounts = [v for k, v in opts if k in ("--bindmount_ro", "--bindmount", "--mount", "--tmpfsmount")]
    assert mounts == [
        "/tmp/stage/python:/root/.pyenv/versions/3.11.7",
        "/tmp/stage/empty:/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages",
        "/usr/lib",
        "/usr/lib64",
        f"none:/tmp:tmpfs:size={2**20}",
    ]
    assert [v for k, v in opts if k == "--symlink"] == ["usr/lib:/lib", "usr/lib64:/lib64"]
    assert ("--cwd", "/tmp") in opts


def test_command_filters_syscalls() -> None:
    policy = dict(options(command()))["--seccomp_string"]
    assert policy.startswith("ERRNO(38) { clone3 }") and policy.endswith("DEFAULT ALLOW")
    assert all(f" {name}," in policy for name in ("ptrace", "bpf", "keyctl", "pivot_root"))
    # the fork-server builds each program's namespaces: these stay open at the jail level
    assert all(f" {name}," not in policy for name in ("unshare", "setns", "mount"))


def test_command_leaves_limits_to_the_fork_server_and_cgroups_to_the_engine() -> None:
    argv = command()
    opts = dict(options(argv))
    assert opts["--time_limit"] == "0" and "--disable_rlimits" in argv  # per program, in the fork-server
    assert not any(k.startswith("--cgroup") for k in opts)  # joined before nsjail starts (sandbox/cgroups.py)
    assert "--keep_caps" not in argv and "--cap" not in argv


def test_a_worker_joins_its_cgroups_before_its_jail_starts(tmp_path) -> None:
    """The wrapper writes its own pid into every cgroup.procs, then execs the jail's command:
    every process of the jail is inside from the first; a cgroup it cannot join stops it."""
    import subprocess
    from pathlib import Path

    from sandbox.cgroups import JailCgroup

    dirs = {c: tmp_path / c for c in ("cpu", "memory")}
    for path in dirs.values():
        path.mkdir()
    argv = JailCgroup(dirs).join_command("/bin/sh") + ["/bin/sh", "-c", "echo $$"]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert {(p / "cgroup.procs").read_text().strip() for p in dirs.values()} == {done.stdout.strip()}
    missing = JailCgroup({"cpu": Path("/nonexistent/x")}).join_command("/bin/sh") + ["/bin/true"]
    assert subprocess.run(missing, capture_output=True).returncode == 125


def test_command_runs_isolated_python_with_the_fork_server() -> None:
    from sandbox.forkserver.boot import BOOTSTRAP

    argv = command()
    assert argv[argv.index("--", 14) + 1 :] == [
        "/root/.pyenv/versions/3.11.7/bin/python3.11",
        "-I",
        "-S",
        "-B",
        "-u",
        "-X",
        "utf8",
        "-c",
        BOOTSTRAP,
        "CONFIG",
        "worker-1",
    ]


# --- small pieces ---------------------------------------------------------------------------


def test_check_program_matches_human_eval() -> None:
    assert check_program("P" + "C", "T", "f") == "P" + "C" + "\n" + "T" + "\n" + "check(f)"


def test_limits_defaults_units_and_validation() -> None:
    limits = Limits()
    assert limits.to_dict() == {
        "timeout_s": 3.0,
        "cpu_time_s": None,
        "memory_mb": 1024,
        "max_processes": 32,
        "max_file_mb": 16,
        "max_open_files": 64,
        "tmp_mb": 64,
        "max_output_bytes": 16384,
        "guards": True,
        "jail_memory_mb": 2048,
    }
    assert Limits(cpu_time_s=0.25).cpu_time_s == 0.25
    for bad in ({"timeout_s": 0}, {"memory_mb": -1}, {"timeout_s": float("inf")}, {"cpu_time_s": 0}):
        with pytest.raises(ValueError):
            Limits(**bad)
    for bad in ({"memory_mb": 1.5}, {"max_processes": True}, {"timeout_s": "3"}):
        with pytest.raises(TypeError):
            Limits(**bad)
    with pytest.raises(AttributeError):
        limits.timeout_s = 5


def test_own_cgroups() -> None:
    text = "9:name=systemd:/\n4:memory:/process_api/43e5\n2:cpu,cpuacct:/\n0::/\n"
    assert own_cgroups(text) == {
        "name=systemd": "/",
        "memory": "/process_api/43e5",
        "cpu": "/",
        "cpuacct": "/",
    }
    assert own_memory_cgroup(text) == "/process_api/43e5"
    assert own_memory_cgroup("0::/user.slice\n") is None
    assert own_memory_cgroup("garbage\n\n") is None


def test_outcome_to_dict() -> None:
    outcome = Outcome(Verdict.failed, "AssertionError", 0.05, "nsjail", Limits(), "out", cpu_s=0.01)
    assert outcome.to_dict()["verdict"] == "failed" and outcome.to_dict()["limits"]["timeout_s"] == 3.0
    assert outcome.to_dict()["cpu_s"] == 0.01 and outcome.to_dict()["reused"] is False
    assert not outcome.passed


# --- the pool's scheduling, with a fake backend -----------------------------------------------


class FakeBackend:
    name = "fake"

    def __init__(self) -> None:
        self.running = 0
        self.most_running = 0
        self.started = self.closed = False

    async def start(self, limits: Limits, workers: int) -> None:
        self.started = True

    async def run(self, program: str, limits: Limits, label: str = "", reserved: bool = False) -> Outcome:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(0.01)
        finally:
            self.running -= 1
        return Outcome(Verdict.passed, "check() returned", 0.01, self.name, limits, program)

    async def close(self) -> None:
        self.closed = True


def test_pool_runs_at_most_workers_at_once() -> None:
    async def main() -> FakeBackend:
        backend = FakeBackend()
        async with SandboxPool(workers=3, backend=backend) as pool:
            outcomes = await asyncio.gather(*(pool.run(str(i), label=str(i)) for i in range(20)))
            assert [o.output for o in outcomes] == [str(i) for i in range(20)]
        return backend

    backend = asyncio.run(main())
    assert backend.started and backend.closed and backend.most_running == 3


def test_pool_refuses_misuse() -> None:
    async def main() -> None:
        pool = SandboxPool(workers=1, backend=FakeBackend())
        with pytest.raises(RuntimeError):
            await pool.run("x")
        await pool.start()
        await pool.close()
        await pool.close()  # idempotent
        with pytest.raises(RuntimeError):
            await pool.run("x")

    asyncio.run(main())
    with pytest.raises(ValueError):
        SandboxPool(workers=0, backend=FakeBackend())


# --- the per-program seccomp filter -----------------------------------------------------------


def test_seccomp_filter_denies_what_it_lists_and_allows_the_rest() -> None:
    import errno

    from sandbox import seccomp

    for machine in ("x86_64", "aarch64"):
        program = seccomp.sample_filter(machine)
        arch, numbers = seccomp.ARCHES[machine]
        eperm, enosys = seccomp.RET_ERRNO | errno.EPERM, seccomp.RET_ERRNO | errno.ENOSYS
        for name in seccomp.DENIED:
            assert seccomp.run_filter(program, numbers[name], arch) == eperm, (machine, name)
        assert seccomp.run_filter(program, numbers["clone3"], arch) == enosys
        assert (
            seccomp.run_filter(program, numbers["clone"], arch, arg0=0x01200011) == seccomp.RET_ALLOW
        )  # fork
        assert (
            seccomp.run_filter(program, numbers["clone"], arch, arg0=0x10000000 | 17) == eperm
        )  # CLONE_NEWUSER
        denied = {numbers[n] for n in (*seccomp.DENIED, "clone", "clone3")}
        for nr in (n for n in range(0, 460) if n not in denied):
            assert seccomp.run_filter(program, nr, arch) == seccomp.RET_ALLOW, (machine, nr)
        assert seccomp.run_filter(program, 0, 0x40000003) == seccomp.RET_KILL_PROCESS  # i386 ABI
    x86 = seccomp.sample_filter("x86_64")
    assert (
        seccomp.run_filter(x86, 0x40000000 | 1, seccomp.ARCHES["x86_64"][0])
        == seccomp.RET_ERRNO | errno.EPERM
    )
    with pytest.raises(ValueError):
        seccomp.sample_filter("sparc")
