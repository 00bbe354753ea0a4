"""The sweep, split by responsibility (see sweep.py's docstring for the parts)."""

from engine.sweep.snapshot import Snapshot
from engine.sweep.stream import HUMANEVAL_STOP, Sampling
from engine.sweep.sweep import Sweep, SweepStats

__all__ = ["HUMANEVAL_STOP", "Sampling", "Snapshot", "Sweep", "SweepStats"]
