"""The swappable part of the sandbox: how a worker jail is started (base.py: the Launcher
protocol and the LAUNCHERS registry; nsjail.py, firejail.py, bare.py: one kind each)."""

from sandbox.launchers.base import LAUNCHERS, Launcher

__all__ = ["LAUNCHERS", "Launcher"]
