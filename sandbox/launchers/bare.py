"""The `none` launcher (--sandbox none): the same fork-server as a plain process of the engine's
own user. Rlimits, a session per program and a scratch directory; no isolation at all. Trusted
code only."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

from sandbox.forkserver.boot import boot_command
from sandbox.limits import Limits


class BareLauncher:
    """No jail: this interpreter, started again with the fork-server's flags."""

    name = "none"

    def __init__(self) -> None:
        self._tmp: str | None = None

    def prepare(self, limits: Limits) -> None:
        self._tmp = tempfile.mkdtemp(prefix=f"engine-sandbox-{os.getpid()}-")

    def server_config(self) -> dict:
        return {"pidns": False, "mountns": False, "seccomp": "", "tmp_root": self._tmp}

    def command(self, config: dict, label: str) -> list[str]:
        return boot_command(sys.executable, json.dumps(config), label)

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
