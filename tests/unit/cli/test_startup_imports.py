"""`engine verify` starts without the heavy libraries only other commands need (issue 14,
start-up): the HTTP client (aiohttp, for `engine run`), numpy (pass@k is plain Python; numpy's
import and its BLAS threads cost more than the arithmetic), tqdm (a progress bar, only on a
terminal) and prometheus_client (metrics of a sweep, or of Ray nodes).

Each check runs in a fresh interpreter, since this test process has imported everything."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("aiohttp", "numpy", "tqdm", "prometheus_client")

# What `engine verify FILE --json` imports before it opens the sandboxes: the CLI, the command as
# click resolves it, and the module the command calls.
RESOLVE_VERIFY = """
import click
from engine.cli import main
main.get_command(click.Context(main), "verify")
import engine.verify
"""


def heavy_loaded_after(code: str) -> list[str]:
    probe = (
        code
        + f"\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_verify_command_imports_none_of_the_heavy_libraries():
    """Invariant: resolving and importing `engine verify` loads no module of HEAVY."""
    assert heavy_loaded_after(RESOLVE_VERIFY) == []


@pytest.mark.parametrize("module", ["engine.config", "engine.summary", "engine.remote", "metrics.passk"])
def test_the_modules_every_command_shares_import_none_of_them(module):
    """The shared modules stay light on their own, whichever command imports them first."""
    assert heavy_loaded_after(f"import {module}") == []


def test_the_request_deadline_is_the_same_constant_for_the_client_and_the_configuration():
    """Moved to engine.config (read by every command); the client's default deadline is that one."""
    import inspect

    from engine import client, config

    assert client.DEFAULT_REQUEST_DEADLINE_S is config.DEFAULT_REQUEST_DEADLINE_S
    assert inspect.signature(client.timeout_for).parameters["deadline"].default == 900.0
    assert config.Scheduling().request_timeout_s == 900.0
