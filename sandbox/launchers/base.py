"""What a launcher is, and the registry of them.

A launcher starts one worker jail: it prepares the host once per pool, says which isolation the
fork-server inside should add (its CONFIG_JSON, see sandbox/forkserver/server.py), and gives the
argv of each jail. ForkServerBackend (sandbox/forkserver/backend.py) does the rest, the same for
every launcher. A new sandbox kind is one module in this folder and one line in LAUNCHERS: the
CLI's --sandbox choices and SandboxPool's factory both read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sandbox.launchers.bare import BareLauncher
from sandbox.launchers.firejail import FirejailLauncher
from sandbox.launchers.nsjail import NsjailLauncher
from sandbox.limits import Limits


class Launcher(Protocol):
    """How a worker jail is started: one per sandbox kind."""

    name: str  # the --sandbox value; also shown in each jail's label and in logs

    def prepare(self, limits: Limits) -> None:
        """Host-side set-up, once per pool; OSError (FileNotFoundError naming what is missing) or
        ValueError if this host cannot run the jail."""

    def server_config(self) -> dict:
        """The fork-server's CONFIG_JSON: which isolation it adds per program. After prepare()."""

    def command(self, config: dict, label: str) -> list[str]:
        """The argv of one worker jail running the fork-server with `config`; `label` shows in `ps`."""

    def close(self) -> None:
        """Undo prepare(); safe to call more than once."""


# The default first: the CLI shows the choices in this order.
LAUNCHERS: dict[str, Callable[[], Launcher]] = {
    NsjailLauncher.name: NsjailLauncher,
    FirejailLauncher.name: FirejailLauncher,
    BareLauncher.name: BareLauncher,
}
