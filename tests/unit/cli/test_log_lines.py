"""Log lines of the CLI go through engine.progress.write_line: above the progress bar when one is
drawn (tqdm), a plain line on stderr otherwise, without importing tqdm (`engine verify --json`
and every run without a terminal never draw a bar)."""

from __future__ import annotations

import subprocess
import sys

import pytest

LOG_TWO_LINES = """
import logging, sys
{before}
from engine.cli import setup_logging
setup_logging(0)
logging.getLogger("engine").info("first line")
logging.getLogger("sandbox.verifier").warning("second: %s", "with an argument")
print("tqdm" in sys.modules)
"""


def run(before: str) -> tuple[list[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", LOG_TWO_LINES.format(before=before)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # "HH:MM:SS L message": the clock aside, the lines must be identical
    return [line[9:] for line in result.stderr.splitlines()], result.stdout.strip()


@pytest.mark.parametrize("before, tqdm_loaded", [("", "False"), ("import tqdm", "True")])
def test_log_lines_are_the_same_with_or_without_tqdm_loaded(before, tqdm_loaded):
    """Invariant: the same lines on stderr, in order, whether or not tqdm was imported; the CLI
    itself does not import it."""
    lines, loaded = run(before)
    assert lines == ["I first line", "W second: with an argument"]
    assert loaded == tqdm_loaded
