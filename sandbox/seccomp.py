"""The per-sample seccomp filter: a classic-BPF program built here (pure, no libseccomp) and
installed by the fork-server in each sample's child, after its namespaces are set up and before
the program runs. Run as: prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) under no_new_privs.

What it denies is what no verification needs and what most kernel exploits start from: new
namespaces and mounts (the child sets up its own before the filter goes on), ptrace and reading
other processes' memory, bpf, io_uring, keyrings, module loading, reboot. clone3 answers ENOSYS
(its flags live in memory a filter cannot read), so glibc falls back to clone, whose flags are
checked. Non-native system call ABIs (i386, x32) are refused outright.
"""

from __future__ import annotations

import errno
import platform
import struct

# Classic BPF opcodes (linux/filter.h) and seccomp constants (linux/seccomp.h, linux/audit.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
RET_KILL_PROCESS = 0x80000000
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
_ARCH_OFFSET, _NR_OFFSET, _ARG0_LOW_OFFSET = 4, 0, 16
X32_SYSCALL_BIT = 0x40000000
# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
CLONE_NAMESPACE_FLAGS = 0x7E020000

ARCHES = {  # machine -> (AUDIT_ARCH_*, syscall numbers)
    "x86_64": (
        0xC000003E,
        {
            "clone": 56,
            "clone3": 435,
            "ptrace": 101,
            "syslog": 103,
            "pivot_root": 155,
            "chroot": 161,
            "acct": 163,
            "mount": 165,
            "umount2": 166,
            "swapon": 167,
            "swapoff": 168,
            "reboot": 169,
            "init_module": 175,
            "delete_module": 176,
            "kexec_load": 246,
            "add_key": 248,
            "request_key": 249,
            "keyctl": 250,
            "unshare": 272,
            "perf_event_open": 298,
            "name_to_handle_at": 303,
            "open_by_handle_at": 304,
            "setns": 308,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "kcmp": 312,
            "finit_module": 313,
            "kexec_file_load": 320,
            "bpf": 321,
            "userfaultfd": 323,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "fspick": 433,
            "pidfd_getfd": 438,
            "mount_setattr": 442,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "clone": 220,
            "clone3": 435,
            "ptrace": 117,
            "syslog": 116,
            "pivot_root": 41,
            "chroot": 51,
            "acct": 89,
            "mount": 40,
            "umount2": 39,
            "swapon": 224,
            "swapoff": 225,
            "reboot": 142,
            "init_module": 105,
            "delete_module": 106,
            "kexec_load": 104,
            "add_key": 217,
            "request_key": 218,
            "keyctl": 219,
            "unshare": 97,
            "perf_event_open": 241,
            "name_to_handle_at": 264,
            "open_by_handle_at": 265,
            "setns": 268,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "kcmp": 272,
            "finit_module": 273,
            "kexec_file_load": 294,
            "bpf": 280,
            "userfaultfd": 282,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "fspick": 433,
            "pidfd_getfd": 438,
            "mount_setattr": 442,
        },
    ),
}
DENIED = tuple(name for name in ARCHES["x86_64"][1] if name not in ("clone", "clone3"))


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def sample_filter(machine: str | None = None) -> bytes:
    """The filter as the bytes of a `struct sock_filter[]` (8 bytes per instruction)."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise ValueError(f"no seccomp filter for machine {machine!r}")
    audit_arch, numbers = ARCHES[machine]
    eperm, enosys = RET_ERRNO | errno.EPERM, RET_ERRNO | errno.ENOSYS
    denied = sorted(numbers[name] for name in DENIED)
    # Layout: [arch check] [nr load] [x32 check] [denied...] [clone3] [clone] [allow] [eperm] [enosys]
    # [clone flags: load arg0, jset, allow, eperm]; jumps are relative to the next instruction.
    head = [
        _insn(_LD_W_ABS, _ARCH_OFFSET),
        _insn(_JEQ_K, audit_arch, 1, 0),
        _insn(_RET_K, RET_KILL_PROCESS),
        _insn(_LD_W_ABS, _NR_OFFSET),
    ]
    n = len(denied)
    # instructions after the nr load: x32 (1), denied (n), clone3 (1), clone (1), allow, eperm, enosys, flags(4)
    body: list[bytes] = []
    allow_at = 1 + n + 2  # index (in body) of the "allow" return
    eperm_at, enosys_at, flags_at = allow_at + 1, allow_at + 2, allow_at + 3
    if machine == "x86_64":
        body.append(_insn(_JGE_K, X32_SYSCALL_BIT, eperm_at - 1 - 0, 0))
    else:
        body.append(_insn(_JEQ_K, 0xFFFFFFFF, eperm_at - 1, 0))  # never true: keeps the layout
    for number in denied:
        i = len(body)
        body.append(_insn(_JEQ_K, number, eperm_at - i - 1, 0))
    i = len(body)
    body.append(_insn(_JEQ_K, numbers["clone3"], enosys_at - i - 1, 0))
    i = len(body)
    body.append(_insn(_JEQ_K, numbers["clone"], flags_at - i - 1, 0))
    body += [
        _insn(_RET_K, RET_ALLOW),
        _insn(_RET_K, eperm),
        _insn(_RET_K, enosys),
        _insn(_LD_W_ABS, _ARG0_LOW_OFFSET),
        _insn(_JSET_K, CLONE_NAMESPACE_FLAGS, 1, 0),
        _insn(_RET_K, RET_ALLOW),
        _insn(_RET_K, eperm),
    ]
    program = head + body
    if len(program) > 255:  # jump offsets are one byte
        raise AssertionError("seccomp filter too long")
    return b"".join(program)


def run_filter(program: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """Interpret the filter for one system call (for tests): the SECCOMP_RET_* value."""
    insns = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    data = {_ARCH_OFFSET: arch, _NR_OFFSET: nr, _ARG0_LOW_OFFSET: arg0 & 0xFFFFFFFF}
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == _LD_W_ABS:
            acc = data[k]
        elif code == _JEQ_K:
            pc += jt if acc == k else jf
        elif code == _JGE_K:
            pc += jt if acc >= k else jf
        elif code == _JSET_K:
            pc += jt if acc & k else jf
        elif code == _RET_K:
            return k
        else:
            raise ValueError(f"unknown opcode {code:#x}")
