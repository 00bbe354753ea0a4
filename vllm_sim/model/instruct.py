"""Chat for the synthetic model (SYNTHETIC): the chat template's token count, finding a
HumanEval prompt in the messages, and answers worded like an instruct model's.

A HumanEval answer is a short sentence, then the whole function in a ```python fence (the
prompt's code, with or without its imports and docstring, followed by the body the
completions model would give for the same sample seed), then sometimes a closing sentence;
the sequence then ends (end of sequence, finish_reason "stop", no stop_reason). Anything else
gets a few generic sentences, also ending by itself. Pure functions and tables, no I/O.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vllm_sim.gpu.tokens import count_tokens

# A Llama 3 instruct template: <|begin_of_text|>, then per message <|start_header_id|> ROLE
# <|end_header_id|> "\n\n" CONTENT <|eot_id|>, then the assistant's header. Special tokens count
# one each; "hi" as the only user message makes 11 tokens, as in the real transcripts.
_BEGIN_TOKENS = 1
_HEADER_TOKENS = 3  # start header, end header, "\n\n" (plus the role's own tokens)
_END_TOKENS = 1

INTROS = (
    "Here is the completed function:",
    "Here's the implementation of `{entry}`:",
    "Sure! Here is the complete `{entry}` function:",
    "Here is a Python implementation:",
)
OUTROS = (
    "",
    "",
    "This function returns the expected results for the examples in the docstring.",
    "The function goes through the input once and returns the result.",
    "Let me know if you need any further changes!",
)
FENCE_OPEN = "\n\n```python\n"
FENCE_CLOSE = "```"

# What the fenced code holds before the body, with cumulative weights: the function with its
# docstring, the whole prompt (imports and helpers too), the function without its docstring,
# or nothing (the body alone, as a base model would write it).
FORMS = ("function", "whole_prompt", "no_docstring", "body_only")
_FORM_WEIGHTS = (0.45, 0.25, 0.25, 0.05)

_GREETING = "Hello! I am a synthetic model answering for a simulated vLLM server."
_SENTENCES = (
    "I can help with Python, algorithms and data structures.",
    "Could you tell me a little more about what you need?",
    "Here is a short answer to your question.",
    "A list comprehension is often the clearest way to build a new list.",
    "Sorting first makes many of these problems easier.",
    "Remember to handle the empty input as a special case.",
    "A dictionary gives constant-time lookups on average.",
    "Recursion works well here, but an explicit loop avoids deep call stacks.",
    "Testing with a few small examples usually reveals off-by-one errors.",
    "The standard library has a function for that in itertools.",
    "Type hints make the intent of a function easier to read.",
    "Let me know if you would like an example.",
)
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


def prompt_tokens(messages: Sequence[Message]) -> int:
    """The prompt's length once the chat template is applied (with the generation prompt)."""
    total = _BEGIN_TOKENS
    for m in messages:
        total += (
            _HEADER_TOKENS
            + count_tokens(m.role)
            + (count_tokens(m.content) if m.content else 0)
            + _END_TOKENS
        )
    return total + _HEADER_TOKENS + count_tokens("assistant")


def last_user_content(messages: Sequence[Message]) -> str | None:
    for m in reversed(messages):
        if m.role == "user":
            return m.content
    return None


def code_candidates(content: str) -> list[str]:
    """Where a HumanEval prompt may be: the first ```python block, else the whole message."""
    match = _FENCE.search(content)
    found = [match.group(1)] if match else []
    return found + [content]


def function_prefixes(prompt: str, entry_point: str) -> dict[str, str]:
    """The code an answer writes before the body, by form (see FORMS)."""
    prefixes = {"whole_prompt": prompt.lstrip("\n"), "body_only": ""}
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return prefixes
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry_point]
    if not funcs or not prompt.endswith("\n"):
        return prefixes
    func = funcs[-1]
    lines = prompt.splitlines(keepends=True)
    first = min([func.lineno] + [d.lineno for d in func.decorator_list]) - 1
    prefixes["function"] = "".join(lines[first:])
    doc = next(
        (
            s
            for s in func.body
            if isinstance(s, ast.Expr)
            and isinstance(s.value, ast.Constant)
            and isinstance(s.value.value, str)
        ),
        None,
    )
    if doc is not None and doc.lineno > func.lineno and doc.end_lineno is not None:
        kept = lines[first : doc.lineno - 1] + lines[doc.end_lineno :]
        prefixes["no_docstring"] = "".join(kept).rstrip("\n") + "\n"
    else:
        prefixes["no_docstring"] = prefixes["function"]
    return prefixes


def pick_form(u: float) -> str:
    acc = 0.0
    for form, weight in zip(FORMS, _FORM_WEIGHTS):
        acc += weight
        if u < acc:
            return form
    return FORMS[-1]


def intro(i: int, entry_point: str) -> str:
    return INTROS[i].format(entry=entry_point)


def outro(i: int) -> str:
    return "\n\n" + OUTROS[i] if OUTROS[i] else ""


def generic_answer(start: int, count: int) -> str:
    """A greeting and `count` sentences from the pool, cyclically from `start`."""
    picked = [_SENTENCES[(start + i) % len(_SENTENCES)] for i in range(count)]
    return " ".join([_GREETING, *picked])


GENERIC_STARTS = len(_SENTENCES)
GENERIC_COUNTS = (1, 2, 3, 4, 5)

# The answer to a problem without a reference (engine simulate has nothing right to say).
NO_REFERENCE = "This problem has no reference solution in the simulated model's dataset."
