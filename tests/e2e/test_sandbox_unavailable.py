"""A sandbox that cannot start, through the CLI as a process: one line on stderr, exit status 2.
As root, as the commands run (without root the cgroup warnings come first). The mapping itself is
tested in-process in tests/unit/sandbox/test_sandbox_layout.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("command", [["verify", "s.jsonl"], ["verify", "--self-test"]])
def test_a_sandbox_that_cannot_start_is_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    """Through the CLI, the mapped error prints as before: one line on stderr, exit status 2."""
    (tmp_path / "s.jsonl").write_text('{"task_id": "HumanEval/0", "completion": "    return True\\n"}\n')
    env = {**os.environ, "NSJAIL": "/nonexistent/nsjail"}
    done = subprocess.run(
        [sys.executable, "-m", "engine", *command, "--sandbox", "nsjail"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert lines == [
        "engine: error: sandbox nsjail unavailable: nsjail binary /nonexistent/nsjail is missing or not executable"
    ]
