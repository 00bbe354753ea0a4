"""Jails need root (user and mount namespaces, cgroups): without it, say so instead of failing
every test with the same unshare error."""

import os

import pytest


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("tests/jail/ needs root (namespaces, cgroups)")
