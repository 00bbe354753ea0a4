"""What the synthetic model needs of a problem's task kind, asked through the task seam only
(engine.tasks): the reference answer, how a completion ends, and where the chat form puts the
problem. No kind is named here: every kind the engine knows is answered the same way.

- The answer is `Task.reference(problem)` (or a mutant of it). A problem without a reference
  gets PLACEHOLDER, a completion that raises at once, so it fails under every kind.
- After the answer a base model keeps writing. HumanEval's trailers (a `main()`, a `__main__`
  guard, example prints) follow it when the kind's stop sequences cut every one of them; else
  the trailers are the kind's own stop sequences, so a client that sends them cuts the answer
  where a real one would, and a client that does not gets the filler that follows.
- Chat: the problem is found by the last user message its kind's `chat_messages` writes; the
  fenced code is the answer itself when the kind's `extract` gives it back unchanged, else the
  whole program (prompt + answer).
"""

from __future__ import annotations

from engine.records import Problem
from engine.tasks import TASKS, Task

PLACEHOLDER = 'raise NotImplementedError("engine simulate: this problem has no reference solution")\n'

# What the model writes after a HumanEval function body. Each starts a new top-level statement,
# which HumanEval's stop sequences ("\ndef", "\nclass", "\nif", "\nprint", "\n#") cut away.
TRAILERS = (
    '\n\ndef main():\n    print({call})\n\n\nif __name__ == "__main__":\n    main()\n',
    '\n\nif __name__ == "__main__":\n    import doctest\n    doctest.testmod()\n',
    "\n\n# Example usage:\nprint({call})\n",
    "\n\nprint({call})\n",
    "\n\n\ndef test_{entry}():\n    assert {call} is not None\n",
    "\n\nclass Solution:\n    def {entry}(self, *args):\n        return {entry}(*args)\n",
)


def task_of(problem: Problem) -> Task | None:
    return TASKS.get(problem.kind)


def reference(problem: Problem) -> str | None:
    """The kind's reference completion; a problem of a kind the engine does not know is read as
    HumanEval-shaped (its payload's canonical_solution)."""
    task = task_of(problem)
    found = task.reference(problem) if task else problem.payload.get("canonical_solution")
    return found or None


def trailers(problem: Problem) -> tuple[str, ...]:
    """What may follow the answer in completion form (see the module's docstring)."""
    task = task_of(problem)
    stops = tuple(task.stop) if task else ()
    if task is None or all(_cut_at_once(t, stops) for t in TRAILERS):
        return TRAILERS
    return tuple("\n" + stop + "\n" for stop in stops)


def _cut_at_once(trailer: str, stops: tuple[str, ...]) -> bool:
    """True when a stop sequence cuts the trailer before anything but blank space."""
    cuts = [trailer.find(stop) for stop in stops if stop in trailer]
    return bool(cuts) and not trailer[: min(cuts)].strip()


def chat_user_content(problem: Problem) -> str | None:
    """The last user message of the problem's chat form, as its kind writes it."""
    task = task_of(problem)
    if task is None:
        return None
    users = [m["content"] for m in task.chat_messages(problem, "") if m.get("role") == "user"]
    return users[-1] if users else None


def answer_is_whole_code(problem: Problem, answer: str) -> bool:
    """True when the kind takes `answer` back out of a ```python block unchanged (so a chat
    answer may hold it alone); else the answer is fenced after the prompt, as a whole program."""
    task = task_of(problem)
    return task is not None and task.extract(problem, f"```python\n{answer}```") == answer
