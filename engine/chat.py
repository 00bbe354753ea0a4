"""Instruct models through /v1/chat/completions: the prompt as a chat message, and the code
taken back out of the answer (from a markdown fence when there is one)."""

from __future__ import annotations

import re

DEFAULT_SYSTEM_PROMPT = (
    "You are an expert Python programmer. Complete the Python function the user gives you. "
    "Answer with the whole function, including its signature, in one ```python code block."
)

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def chat_messages(system_prompt: str, prompt: str) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": f"```python\n{prompt.rstrip()}\n```"})
    return messages


def extract_completion(answer: str, entry_point: str) -> str:
    """What to append to the prompt to make the program. A whole function (the usual answer of
    an instruct model) is appended after the prompt, where it replaces the prompt's stub; a bare
    body continues the prompt as a base model's completion would."""
    match = _FENCE.search(answer)
    code = match.group(1) if match else answer
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return "\n" + code if not code.startswith("\n") else code
    return code
