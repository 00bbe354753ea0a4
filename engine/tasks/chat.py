"""Chat helpers every task kind may use: the prompt as a fenced user message, and the code taken
back out of an instruct model's answer (from a markdown fence when there is one)."""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def fenced_messages(system_prompt: str, user_code: str) -> list[dict[str, str]]:
    """A system message (when there is one), then `user_code` in a ```python fence."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": f"```python\n{user_code.rstrip()}\n```"})
    return messages


def code_from_answer(answer: str) -> str:
    """The first fenced code block of the answer (to the end if it is not closed), else all of it."""
    match = _FENCE.search(answer)
    return match.group(1) if match else answer
