"""The fork-server: runs INSIDE a jail (nsjail or firejail; bare for --sandbox none), imports once,
then forks one fresh child per program.

Run as: python -I -S -B -u -X utf8 -c <this file's source> CONFIG_JSON

Standard library only: the jail sees no project files. It travels as one source made of
guards.py, child.py (what runs in each program's child), pipes.py (reading a child's pipes,
cleaning up after it) and this file, in that order (worker.SERVER_SOURCE); this file uses the
others' names as its own.

PROTOCOL (the engine's half is sandbox/forkserver/worker.py), over the server's stdin/stdout:

    engine -> server   frames: a 4-byte big-endian length, then that many bytes.
                       Frame 1: the server's own source (boot.py's bootstrap reads and runs it).
                       Every later frame: one request, JSON {"program": str, "limits": {...}}
                       (sandbox.limits.Limits.to_dict), with optional data fields (below),
                       or the raw bytes of a data blob announced by the request before it.
                       End of input (EOF) ends the server.
    server -> engine   lines of JSON: first {"event": "hello", ...} (its features, or "fault"),
                       then exactly one {"event": "result", ...} per request (see `_serve_one`),
                       in the order the requests were sent.

Problem data (a task's test inputs: the same for every sample of a problem) travels to a jail
once, not with every program. A request may carry:
    "evict": [digest, ...]   blobs the server drops first (the engine decides what it holds);
    "data": digest           the blob this program gets (SHA-256 hex of its bytes);
    "data_follows": true     the next frame is that blob's bytes: the server checks the digest
                             and keeps it until evicted (or the jail ends).
The engine keeps an exact mirror of what each jail holds (blobs.py: least recently used evicted
past a byte budget), so it sends the bytes only to a jail that does not hold them; a fresh or
recycled jail holds nothing. A program gets its blob as the bytes object `__problem_data__` in
its globals (plain programs only, not guarded ones). It cannot change the blob for later
programs: it runs in a forked child, so whatever it writes (even through ctypes into the bytes
object's buffer) lands on the child's copy-on-write pages, never the server's. A request naming
a blob the server does not hold, sending one it holds, or bytes that do not match their digest,
is not run: its reply
says "started": false with a fault (an infrastructure error, retried), never a wrong input.

Requests are pipelined: the engine may send the next ones before the current one is answered
(worker.PIPELINE_DEPTH: up to six in flight), so the next program is already in the server's stdin
when the current one ends. The server reads and runs one at a time, each under its own limits;
a request never affects another's verdict. A server that dies answers no more: the engine gives
every unanswered request an infrastructure error. Extending it: add fields to the request
object (the server ignores fields it does not know) or new "event" kinds for frames that are
not programs; a reply stays one line per request, in order, so the matching stays trivial.

CONFIG: {"pidns": per-program pid namespaces (always, except --sandbox none), "mountns": a
private mount namespace with its own /tmp (nsjail), "mount_proc": also a fresh /proc there,
"seccomp": the filter's bytes in hex, "wipe": directories emptied after each program when there
is no private /tmp (firejail), "kill_uid": kill every other process of our uid after each program
(only where the server's uid is its own, never for --sandbox none)}.

Per program, in order (nsjail: all of it):
1. The server itself is pid 1 of a pid namespace it created at start-up inside a user namespace
   of its own (unprivileged: it holds capabilities only over namespaces it made). For each
   program it unshares a NEW pid namespace and forks: the child is pid 1 there. When the child
   ends, the kernel kills every process left in its namespace, setsid()'d daemons included, and
   the server's waitpid returns only after they are gone. The server is outside that namespace,
   so the program cannot see or signal it; it is also non-dumpable, so /proc/<server> is closed.
2. The child: own session and process group; new mount and IPC namespaces with a fresh, size-
   limited tmpfs on /tmp (its cwd; empty, private, gone with it) and, where the jail allows, a
   fresh read-only /proc that shows only its own namespace; rlimits (address space, processes,
   file size, open files, CPU as a backstop, no core); first in line for the OOM killer; stdin at EOF, stdout+stderr to one pipe,
   every other descriptor closed; all capabilities dropped, no_new_privs, then the seccomp
   filter of sandbox/seccomp.py. Then it runs the program in a fresh globals dict, or, for a
   program built with guards when the limits ask for them, as candidate, restore, test
   (guards.py, whose source precedes this one in the jail).
3. The server enforces the wall-clock limit (SIGKILL to the child = the whole namespace), reads
   the child's output into a bounded tail and its status records, reaps it with wait4 (CPU time
   of it and all its descendants) and answers one line. The engine keeps its own backstop timer.

The pass record: written by the child only after exec of the program returned, carrying a nonce
that the server generates after the fork and writes into a pipe the child reads only then: the
nonce is never in a Python object, a frame or the child's memory while the program runs. It is
not unforgeable: the child is the program's own process, so a program written against this
harness can read that pipe and write the record itself. See the README ("What a pass means").
"""

import ctypes
import json
import os
import signal
import sys
import time
import traceback

STATUS_TAIL_BYTES = 8192
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x08000000, 0x10000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 0x4000, 0x40000
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 4, 38, 22, 2
# Modules HumanEval-style tests use, imported once here so that no child pays for them.
PREWARM = (
    "math",
    "re",
    "itertools",
    "collections",
    "functools",
    "typing",
    "string",
    "heapq",
    "bisect",
    "hashlib",
    "random",
    "statistics",
    "fractions",
    "decimal",
    "operator",
    "copy",
    "json",
)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


def main():
    config = json.loads(sys.argv[1])
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    for name in PREWARM:
        __import__(name)
    _warm_up()
    guards = GuardSnapshot()  # guards.py, whose source comes first in the jail (worker.SERVER_SOURCE)
    import gc

    gc.collect()
    gc.freeze()  # children then never walk (and so never copy) the server's own objects
    server = Server(config, guards)
    hello = {"event": "hello", "python": sys.version.split()[0], "pid": os.getpid()}
    try:
        server.setup()
    except OSError as exc:
        hello["fault"] = str(exc)
    hello.update(server.features())
    _write_line(hello)
    if "fault" in hello:
        os._exit(1)
    server.serve()


WARM_UP = """
from typing import List, Optional, Tuple
import math


class Point:
    def __init__(self, x: int) -> None:
        self.x = x


def f(values: List[int], k: Optional[int] = None) -> Tuple[int, str]:
    squares = [v * v for v in values if v % 2 == 0]
    total = sum(squares) + (k or 0)
    return total, f"{total:.2f}" + str({v: v for v in values}) + repr(set(values))


def check(candidate):
    assert candidate([1, 2, 3], 1) == (5, "5.00{1: 1, 2: 2, 3: 3}{1, 2, 3}")
    assert abs(math.sqrt(4.0) - 2) < 1e-6
    try:
        int("x")
    except ValueError:
        pass
    assert Point(3).x == 3 and sorted("cba") == list("abc") and "a,b".split(",") == ["a", "b"]


check(f)
"""


def _warm_up():
    """Compile, run and fail once here: the first compile/exec/traceback in a process pays for
    lazy set-up (~2 ms), which every child would otherwise pay again."""
    import io

    exec(compile(WARM_UP, "<program>", "exec"), {})
    try:
        exec(compile("assert 1 == 2, 'no'", "<program>", "exec"), {})
    except AssertionError as exc:
        traceback.print_exception(type(exc), exc, exc.__traceback__, limit=-8, file=io.StringIO())


class Server:
    def __init__(self, config, guards=None):
        self.guards = guards  # what guarded programs restore (guards.py)
        self.isolate = bool(config.get("pidns"))  # per-program pid namespaces (and a user ns for them)
        self.mountns = self.isolate and bool(config.get("mountns"))  # private /tmp (+ /proc) per program
        self.mount_proc = self.mountns and bool(config.get("mount_proc"))
        self.tmp_root = config.get("tmp_root", "/tmp")  # without a mount namespace: per-program dirs here
        self.wipe = tuple(config.get("wipe", ()))
        self.kill_uid = bool(config.get("kill_uid"))
        self.filter = bytes.fromhex(config.get("seccomp", ""))
        self._fprog = None
        self._filter_buf = None
        self._own_pidns = None
        self.count = 0
        self.proc_mounted = False
        self.blobs = Blobs()  # problem data held for the programs (PROTOCOL above)

    def features(self):
        return {
            "pidns": self.isolate,
            "mountns": self.mountns,
            "proc": self.proc_mounted,
            "seccomp": bool(self.filter),
        }

    def setup(self):
        if self.filter:
            self._filter_buf = ctypes.create_string_buffer(self.filter, len(self.filter))
            self._fprog = _SockFprog(len(self.filter) // 8, ctypes.addressof(self._filter_buf))
        if not self.isolate:
            return
        # A user namespace of our own, in which we may create pid/mount namespaces; then become
        # pid 1 of a pid namespace owned by it, so that setns() back to it is allowed.
        ids = os.geteuid(), os.getegid()  # before: inside the new namespace they read as unmapped
        _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWPID), "unshare(user, pid)")
        pid = os.fork()
        if pid:  # the original process waits for the real server and mirrors its end
            os.close(0)
            os.close(1)
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")  # for /proc/self/*_map
        self._map_ids(*ids)  # (no untrusted code exists yet)
        _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
        # As pid 1 of its namespace the server would ignore a SIGTERM from the jail (firejail's
        # shutdown); exit on it instead.
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        self._own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        # Prove once that a child can get everything it needs; learn whether /proc can be mounted.
        self.proc_mounted = self.mount_proc
        probe = self._serve_one({"program": "pass", "limits": {"timeout_s": 10}})
        if not probe.get("ready") and self.mount_proc:
            self.proc_mounted = False
            probe = self._serve_one({"program": "pass", "limits": {"timeout_s": 10}})
        if not probe.get("ready"):
            raise OSError(
                0, "per-program isolation failed: " + (probe.get("fault") or probe.get("status", "")[-300:])
            )

    def _map_ids(self, uid, gid):
        """Map our own uid/gid into the new user namespace: unmapped ids cannot create files.
        (Needs a writable /proc: nsjail runs with --proc_rw; each program mounts a read-only one.)"""
        for name, data in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
            try:
                os.write(fd, data.encode("ascii"))
            finally:
                os.close(fd)

    def serve(self):
        stdin = sys.stdin.buffer
        while True:
            header = stdin.read(4)
            if len(header) < 4:
                os._exit(0)
            request = json.loads(stdin.read(int.from_bytes(header, "big")))
            fault = self.blobs.take(request, stdin)
            if fault:
                _write_line({"event": "result", "started": False, "fault": fault})
            else:
                _write_line(self._serve_one(request))

    def _serve_one(self, request):
        self.count += 1
        limits = request["limits"]
        timeout_s = float(limits.get("timeout_s", 3.0))
        out_cap = int(limits.get("max_output_bytes", 16384))
        out_r, out_w = os.pipe()
        st_r, st_w = os.pipe()
        nonce_r, nonce_w = os.pipe()
        tmpdir = None
        if not self.mountns:
            tmpdir = os.path.join(self.tmp_root, f"s{os.getpid()}-{self.count}")
            os.mkdir(tmpdir, 0o700)
        try:
            if self.isolate:
                _check(_libc.unshare(CLONE_NEWPID), "unshare(pid)")
            started = time.monotonic()
            try:
                pid = os.fork()
            except OSError:
                if self.isolate:
                    _check(_libc.setns(self._own_pidns, CLONE_NEWPID), "setns(pid)")
                raise
            if pid == 0:
                data = self.blobs.held.get(request.get("data"))
                self._child(request["program"], limits, out_w, st_w, nonce_r, tmpdir, data)  # never returns
            if self.isolate:  # back to our own: the next program gets a fresh namespace again
                _check(_libc.setns(self._own_pidns, CLONE_NEWPID), "setns(pid)")
        except OSError as exc:
            for fd in (out_r, out_w, st_r, st_w, nonce_r, nonce_w):
                os.close(fd)
            return {"event": "result", "started": False, "fault": f"cannot start the program: {exc}"}
        for fd in (out_w, st_w, nonce_r):
            os.close(fd)
        nonce = os.urandom(16).hex()  # made after the fork: never in the child's memory
        try:
            os.write(nonce_w, nonce.encode("ascii"))
        except BrokenPipeError:
            pass  # the child has already ended
        os.close(nonce_w)
        output, status = _Tail(out_cap), _Tail(STATUS_TAIL_BYTES)
        timed_out = _watch(pid, started + timeout_s, {out_r: output, st_r: status})
        _, wait_status, usage = os.wait4(pid, 0)
        wall_s = time.monotonic() - started
        _drain({out_r: output, st_r: status})
        os.close(out_r)
        os.close(st_r)
        if not self.isolate:
            _kill_group(pid)
        if self.kill_uid:
            _kill_leftovers()
        if tmpdir is not None:
            _remove_tree(tmpdir)
        for path in self.wipe:
            _empty_dir(path)
        reply = {
            "event": "result",
            "started": True,
            "nonce": nonce,
            "timed_out": timed_out,
            "ready": status.head.startswith(READY),
            "status": status.text(),
            "output": output.text(),
            "output_bytes": output.total,
            "wall_s": round(wall_s, 6),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 6),
        }
        if os.WIFSIGNALED(wait_status):
            reply["signal"] = os.WTERMSIG(wait_status)
        else:
            reply["exit_status"] = os.waitstatus_to_exitcode(wait_status)
        return reply

    def _child(self, program, limits, out_w, st_w, nonce_r, tmpdir, data=None):
        """In the fresh child: set up, then run the program. Never returns."""
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _first_for_the_oom_killer()
            os.setsid()
            if self.mountns:
                _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare(mount, ipc)")
                _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount(private)")
                size = f"size={int(limits.get('tmp_mb', 64))}m,nr_inodes=16384,mode=0700".encode()
                _check(_libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, size), "mount(/tmp)")
                if self.proc_mounted:
                    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY
                    _check(_libc.mount(b"proc", b"/proc", b"proc", flags, None), "mount(/proc)")
                os.chdir("/tmp")
            else:
                os.chdir(tmpdir)
            _set_rlimits(limits)
            empty_r, empty_w = os.pipe()
            os.close(empty_w)
            os.dup2(empty_r, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.dup2(st_w, STATUS_FD)
            os.dup2(nonce_r, NONCE_FD)
            os.closerange(NONCE_FD + 1, 1 << 16)
            if self.isolate:
                caps = (ctypes.c_uint32 * 6)()
                _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), caps), "capset")
            if self._fprog is not None:
                _check(
                    _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0),
                    "seccomp",
                )
            # The CPU-time limit, last so set-up is not charged: SIGPROF once the program's own
            # process has used this much CPU. Sub-second, unlike RLIMIT_CPU, and blind to load. The
            # child is pid 1 of its namespace, which ignores signals it has no handler for, hence
            # the handler; a program that replaces it still meets the wall clock.
            cpu_time = float(limits.get("cpu_time_s") or 0.0)
            if cpu_time > 0:
                signal.signal(signal.SIGPROF, _cpu_limit_reached)
                signal.setitimer(signal.ITIMER_PROF, cpu_time)
        except BaseException as exc:  # noqa: BLE001 - report, never run the program half set up
            try:
                os.write(
                    st_w, json.dumps({"event": "setup_failed", "message": str(exc)[:300]}).encode() + b"\n"
                )
            finally:
                os._exit(CHILD_SETUP_FAILED)
        _run_program(program, self.guards if limits.get("guards") else None, data)


class Blobs:
    """The problem data this server holds, by digest: what the engine sent and has not evicted."""

    def __init__(self):
        self.held = {}

    def take(self, request, stdin):
        """Apply the request's data fields (reading the blob's frame if one follows); a fault
        (str) when the program must not run, else None."""
        import hashlib

        for digest in request.get("evict") or ():
            self.held.pop(digest, None)
        digest = request.get("data")
        if request.get("data_follows"):
            blob = stdin.read(int.from_bytes(stdin.read(4), "big"))
            if hashlib.sha256(blob).hexdigest() != digest:
                return "problem data damaged in transit (digest mismatch)"
            if digest in self.held:
                return "problem data sent again while held (the engine's mirror is wrong)"
            self.held[digest] = blob
        if digest is not None and digest not in self.held:
            return f"problem data {str(digest)[:16]} not held by this jail"
        return None


if __name__ == "__main__":
    main()
