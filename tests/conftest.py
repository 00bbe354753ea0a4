"""Shared by every test: the helpers on the import path, and a marker per folder.

The folders sort tests by what they cost and need (README, "Tests"): `unit/` (no root, no jail,
no sweep, no network), `loopback/` (real sockets on 127.0.0.1, no root), `jail/` (root: namespaces,
cgroups), `e2e/` (processes, sweeps, real tools), `sim/` (the simulator's own). `-m "not e2e"`
and the like select by folder.
"""

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
FOLDERS = ("unit", "loopback", "jail", "e2e", "sim")

# transcripts, fleet_process: imported by name from any folder.
sys.path.insert(0, str(TESTS / "helpers"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(item.path).relative_to(TESTS).parts[0]
        if folder in FOLDERS:
            item.add_marker(folder)
