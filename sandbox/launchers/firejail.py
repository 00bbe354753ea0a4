"""The firejail launcher: finding what it needs on the host, the command line of one worker jail,
and FirejailLauncher, which puts them together.

Run as: the unprivileged account `engine-sandbox` (made by scripts/setup-system.sh: firejail
refuses root-less use by system accounts and `nobody`), through setpriv, never as root.

What firejail gives here (see the README for what it does not): new mount, pid, net (none: only
`lo`), ipc and uts namespaces; all capabilities dropped, no_new_privs, firejail's default seccomp
filter; a private tmpfs home and /tmp, a minimal /dev; the project directory, the engine's home
and virtualenv, /root and /home blacklisted. firejail shows the rest of the host as the account's
own permissions allow (it has no whitelist-only root like nsjail, and its --read-only=/ would
forbid the per-program namespaces): readable where world-readable, writable nowhere, as the
account owns nothing and the host's world-writable directories (/var/tmp, /run/lock, /dev/shm)
are blacklisted too.
The fork-server inside adds a pid namespace per program (kill every descendant) and the
per-program seccomp filter; firejail's seccomp forbids mount, so the programs share the jail's
private /tmp, emptied after each one.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox import seccomp
from sandbox.forkserver.boot import boot_command
from sandbox.limits import Limits

ACCOUNT = "engine-sandbox"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # hidden from the jail


class FirejailLauncher:
    """firejail (Debian's), run as the unprivileged account engine-sandbox."""

    name = "firejail"

    def __init__(self) -> None:
        self.layout: FirejailLayout | None = None

    def prepare(self, limits: Limits) -> None:
        self.layout = discover_firejail(PROJECT_ROOT)

    def server_config(self) -> dict:
        assert self.layout is not None, "server_config() before prepare()"
        return {
            "pidns": True,
            "mountns": False,
            "seccomp": seccomp.sample_filter().hex(),
            "wipe": ["/tmp", self.layout.home],
        }

    def command(self, config: dict, label: str) -> list[str]:
        assert self.layout is not None, "command() before prepare()"
        return firejail_command(self.layout, server_config=json.dumps(config), label=label)

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class FirejailLayout:
    firejail: str
    setpriv: str
    python: str  # the system interpreter of our major.minor: the account cannot reach a home-installed one
    uid: int
    gid: int
    home: str
    hidden: tuple[str, ...]


def discover_firejail(project_root: Path) -> FirejailLayout:
    """Raises FileNotFoundError naming what is missing."""
    firejail = shutil.which("firejail", path="/usr/bin:/bin:/usr/local/bin")
    if firejail is None:
        raise FileNotFoundError("firejail is not installed (scripts/setup-system.sh installs it)")
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin")
    if setpriv is None:
        raise FileNotFoundError("setpriv (util-linux) not found")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    python = f"/usr/bin/python{version}"
    if not os.access(python, os.X_OK):
        raise FileNotFoundError(
            f"{python} (the system Python {version} firejail's account can run) not found"
        )
    try:
        account = pwd.getpwnam(ACCOUNT)
    except KeyError:
        raise FileNotFoundError(f"account {ACCOUNT!r} missing (scripts/setup-system.sh creates it)") from None
    hidden = {
        "/root",
        "/home",
        "/etc/shadow",
        "/etc/gshadow",
        "/var/tmp",
        "/var/lock",
        "/run/lock",
        "/dev/shm",
        str(project_root.resolve()),
        str(Path.cwd().resolve()),
        str(Path(sys.prefix).resolve()),
        str(Path.home().resolve()),
    }
    hidden = {h for h in hidden if h != "/" and os.path.lexists(h)}
    return FirejailLayout(
        firejail, setpriv, python, account.pw_uid, account.pw_gid, account.pw_dir, tuple(sorted(hidden))
    )


def firejail_command(layout: FirejailLayout, *, server_config: str, label: str) -> list[str]:
    drop = [layout.setpriv, f"--reuid={layout.uid}", f"--regid={layout.gid}", "--clear-groups", "--"]
    jail = [
        layout.firejail,
        "--quiet",
        "--noprofile",
        "--private",
        "--private-tmp",
        "--private-dev",
        "--net=none",
        "--nonewprivs",
        "--caps.drop=all",
        "--seccomp",
        "--nogroups",
        "--nosound",
        "--no3d",
        "--nodvd",
        "--notv",
        "--nou2f",
        "--novideo",
        "--noinput",
        "--nodbus",
        "--hostname=sandbox",
        "--deterministic-exit-code",
        "--deterministic-shutdown",
        *[f"--blacklist={path}" for path in layout.hidden],
    ]
    # No "--" before the program: with it, firejail runs the command through the account's shell.
    return drop + jail + boot_command(layout.python, server_config, label)
