"""Generic code-like text (synthetic): what the model writes after an answer, or for a prompt
it does not know.

One long text of small top-level blocks (functions, classes, comments, a `__main__` guard),
built deterministically from the server seed. A sample that runs past its own text continues
here, cycling, so generation can always go on to max_tokens.
"""

from __future__ import annotations

import random

from vllm_sim.gpu.tokens import split_tokens

_NOUNS = ("values", "items", "words", "numbers", "pairs", "scores", "names", "rows", "keys", "nodes")
_VERBS = ("count", "sum", "filter", "merge", "scan", "group", "parse", "rank", "split", "check")
_OPS = ("<", ">", "==", "!=", "<=", ">=")
_MODULES = ("math", "itertools", "collections", "functools", "re", "string", "heapq", "bisect")

_TEMPLATES = (
    'def {verb}_{noun}({noun}):\n    """{Verb} the {noun}."""\n    result = 0\n'
    "    for item in {noun}:\n        if item {op} {c}:\n            result += item\n    return result\n",
    "def {verb}_{noun}_{c}({noun}, limit={c}):\n    out = []\n    for i, item in enumerate({noun}):\n"
    "        if i {op} limit:\n            break\n        out.append(item)\n    return out\n",
    "class {Noun}{Verb}Helper:\n    def __init__(self, {noun}):\n        self.{noun} = list({noun})\n\n"
    "    def {verb}(self):\n        return len(self.{noun}) {op} {c}\n",
    "# {Verb} the {noun} before returning them\nimport {module}\n",
    'if __name__ == "__main__":\n    print({verb}_{noun}([{c}, {d}, {e}]))\n',
    "def test_{verb}_{noun}():\n    assert {verb}_{noun}([{c}, {d}]) is not None\n",
    "print({verb}_{noun}([{d}, {e}, {c}]))\n",
)
_BLOCKS = 96
_SEPARATORS = ("\n\n\n", "\n\n", "\n")


class Filler:
    """The endless continuation: token texts, indexed cyclically."""

    def __init__(self, seed: int):
        rng = random.Random(f"filler/{seed}")
        blocks = []
        for _ in range(_BLOCKS):
            noun, verb = rng.choice(_NOUNS), rng.choice(_VERBS)
            block = rng.choice(_TEMPLATES).format(
                noun=noun,
                Noun=noun.capitalize(),
                verb=verb,
                Verb=verb.capitalize(),
                op=rng.choice(_OPS),
                module=rng.choice(_MODULES),
                c=rng.randint(0, 9),
                d=rng.randint(10, 99),
                e=rng.randint(100, 999),
            )
            blocks.append(block + rng.choice(_SEPARATORS))
        self.text = "".join(blocks)
        self.tokens = split_tokens(self.text)

    def token(self, k: int) -> str:
        return self.tokens[k % len(self.tokens)]
