"""The synthetic model behind the simulated fleet: SYNTHETIC, not a language model.

For a dataset's prompt (recognised by its exact text; any task kind, `kinds`) each sample is
either the kind's reference solution or one of a few plausible wrong answers (`mutations`),
followed by the kind of text a real model keeps writing after the function (for HumanEval a
`main()`, a `__main__` guard, example prints), so the kind's stop sequences cut it as they would
cut a real completion. A problem without a reference gets a placeholder that fails. Any other
prompt gets generic code-like text (`filler`). Through chat (`chat_sample`), the same draw is
worded as an instruct model would answer (`instruct`): the code in a ```python block, then the
end of the sequence.

Which sample comes out is a pure function of (server seed, task, sample seed), so every server
of a fleet, and every restart, gives the same text for the same request seed. Each problem has
a solve rate, the chance that a sample is the canonical solution, drawn from the server seed so
that the fleet behaves like an 8B model on HumanEval: pass@1 ≈ 0.56, pass@10 ≈ 0.80,
pass@100 ≈ 0.89, pass@1000 ≈ 0.93, with fail@k close to a power law in k.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.records import Problem
from vllm_sim.gpu.tokens import split_tokens
from vllm_sim.model import instruct, kinds
from vllm_sim.model.filler import Filler
from vllm_sim.model.kinds import PLACEHOLDER
from vllm_sim.model.mutations import KINDS, Mutant, mutants

# Solve rates: a share of problems the model never solves, the rest Kumaraswamy(a, b), a Beta
# look-alike with a closed-form quantile. Its density ~ p^(a-1) near 0 makes fail@k ~ k^-a.
# Rates are quantiles at evenly spaced levels, dealt to problems in a seed-dependent order, so
# every seed gives the same spread of difficulty (and the same pass@k) on different problems.
NEVER_SOLVED = 0.03
RATE_A = 0.30
RATE_B = 0.32

# How a wrong answer is wrong, as weights (renormalised over the kinds a problem allows).
KIND_WEIGHTS = {
    "wrong_operator": 0.30,
    "off_by_one": 0.25,
    "missing_case": 0.20,
    "exception": 0.13,
    "syntax_error": 0.08,
    "infinite_loop": 0.04,
}
assert set(KIND_WEIGHTS) == set(KINDS)


@dataclass(frozen=True, slots=True)
class SyntheticSample:
    """One completion: its own token texts (`head`), then the filler from `filler_start` on,
    or (`eos`) the end of the sequence right after the head."""

    key: tuple  # identifies the text, for sharing emission plans between equal samples
    kind: str  # "canonical", a mutation kind, or "generic"
    head: tuple[str, ...]
    filler_start: int
    eos: bool = False


@dataclass(frozen=True, slots=True)
class _Answers:
    problem: Problem
    rate: float
    mutants: tuple[Mutant, ...]
    call: str  # an example call of the entry point, for trailers
    trailers: tuple[str, ...]  # what may follow the answer (kinds.trailers); none: it ends


class SyntheticModel:
    """Maps (prompt, sample seed) to a `SyntheticSample`; everything derives from `seed`."""

    def __init__(self, problems: Sequence[Problem], seed: int = 0):
        self.seed = seed
        self.filler = Filler(seed)
        self._problems = {p.prompt: p for p in problems}
        self._references = {p.task_id: ref for p in problems if (ref := kinds.reference(p))}
        self._rates = solve_rates(list(self._references), seed)
        self._answers: dict[str, _Answers] = {}  # built on first use: startup stays cheap
        self._heads: dict[tuple, tuple[str, ...]] = {}
        self._pieces: dict[tuple, tuple[str, ...]] = {}
        self._by_code = {p.prompt.strip(): p for p in problems}
        self._by_user = {content: p for p in problems if (content := kinds.chat_user_content(p))}
        self._found: dict[str, Problem | None] = {}  # user message -> its problem (chat)
        self._prefixes: dict[str, dict[str, str]] = {}

    def problem(self, prompt: str) -> Problem | None:
        return self._problems.get(prompt)

    def solve_rate(self, task_id: str) -> float:
        """The chance that a sample is the reference (0 for a problem without one)."""
        return self._rates.get(task_id, 0.0)

    def unanswerable(self) -> list[str]:
        """Task ids of the problems without a reference: their samples are PLACEHOLDER."""
        return [p.task_id for p in self._problems.values() if p.task_id not in self._references]

    def sample(self, prompt: str, sample_seed: int | None) -> SyntheticSample:
        """The sample for `prompt`; `sample_seed` None means greedy (temperature 0)."""
        problem = self._problems.get(prompt)
        if problem is None:
            return self._generic(prompt, sample_seed)
        if problem.task_id not in self._references:
            key: tuple = ("placeholder", problem.task_id)
            return SyntheticSample(key, "placeholder", self._tokens(key, PLACEHOLDER), 0, eos=True)
        answers = self._answers_for(problem)
        u_solve, u_kind, u_site, u_trailer = _uniforms(self.seed, problem.task_id, sample_seed)
        kind, index, body = self._answer(answers, sample_seed, u_solve, u_kind, u_site)
        if not answers.trailers:  # the kind has no stop sequences: the answer ends the sequence
            key = (problem.task_id, kind, index)
            return SyntheticSample(key, kind, self._tokens(key, body), 0, eos=True)
        trailer = int(u_trailer * len(answers.trailers))
        key = (problem.task_id, kind, index, trailer)
        head = self._heads.get(key)
        if head is None:
            # Token texts are shared between heads: a sweep meets most (answer, trailer) pairs.
            head = self._tokens((problem.task_id, kind, index), body)
            head += self._tokens(
                (problem.task_id, trailer),
                answers.trailers[trailer].format(call=answers.call, entry=_entry(problem)),
            )
            self._heads[key] = head
        return SyntheticSample(key, kind, head, filler_start=0)

    def _answer(
        self, answers: _Answers, sample_seed: int | None, u_solve: float, u_kind: float, u_site: float
    ) -> tuple[str, int, str]:
        """(kind, index among that kind's mutants, body): right or wrong, and how."""
        problem = answers.problem
        if sample_seed is None:  # greedy: the canonical answer iff the model mostly gets it right
            u_solve = 0.0 if answers.rate >= 0.5 else 1.0
        if u_solve < answers.rate or not answers.mutants:
            return "canonical", 0, self._references[problem.task_id]
        kind = _pick_kind(answers.mutants, u_kind)
        same_kind = [m for m in answers.mutants if m.kind == kind]
        index = int(u_site * len(same_kind))
        return kind, index, same_kind[index].body

    # -- chat ------------------------------------------------------------------------------------

    def chat_problem(self, messages: Sequence[instruct.Message]) -> Problem | None:
        """The problem of the last user message: as its kind's chat form writes it, or (a
        HumanEval-shaped prompt) its code in a ```python block or bare."""
        content = instruct.last_user_content(messages)
        if content is None:
            return None
        if content in self._found:
            return self._found[content]
        found = self._by_user.get(content) or next(
            (p for c in instruct.code_candidates(content) if (p := self._by_code.get(c.strip()))), None
        )
        if len(self._found) >= 4096:
            self._found.clear()
        self._found[content] = found
        return found

    def chat_sample(self, messages: Sequence[instruct.Message], sample_seed: int | None) -> SyntheticSample:
        """The answer to a chat; for a HumanEval problem, right or wrong exactly when
        `sample(problem.prompt, sample_seed)` is."""
        problem = self.chat_problem(messages)
        if problem is None:
            subject = "\0".join(f"{m.role}\0{m.content}" for m in messages)
            u_start, u_count, _, _ = _uniforms(self.seed, "chat\0" + subject, sample_seed)
            start = int(u_start * instruct.GENERIC_STARTS)
            count = instruct.GENERIC_COUNTS[int(u_count * len(instruct.GENERIC_COUNTS))]
            key: tuple = ("chat-generic", start, count)
            text = instruct.generic_answer(start, count)
            return SyntheticSample(key, "generic", self._tokens(key, text), 0, eos=True)
        if problem.task_id not in self._references:
            key = ("chat-placeholder", problem.task_id)
            text = instruct.NO_REFERENCE + instruct.FENCE_OPEN + PLACEHOLDER + instruct.FENCE_CLOSE
            return SyntheticSample(key, "placeholder", self._tokens(key, text), 0, eos=True)
        answers = self._answers_for(problem)
        u_solve, u_kind, u_site, _ = _uniforms(self.seed, problem.task_id, sample_seed)
        kind, index, body = self._answer(answers, sample_seed, u_solve, u_kind, u_site)
        u_intro, u_form, u_outro, _ = _uniforms(self.seed, "chat\0" + problem.task_id, sample_seed)
        task = problem.task_id
        prefixes = self._prefixes_for(problem)
        # A prompt that opens the function (HumanEval's shape) is answered in one of FORMS; any
        # other in the one form its kind takes back (chat_prefixes).
        form = instruct.pick_form(u_form) if "function" in prefixes else next(iter(prefixes))
        i_intro, i_outro = int(u_intro * len(instruct.INTROS)), int(u_outro * len(instruct.OUTROS))
        key = ("chat", problem.task_id, kind, index, form, i_intro, i_outro)
        close = instruct.FENCE_CLOSE if body.endswith("\n") else "\n" + instruct.FENCE_CLOSE
        # Not cached whole (too many combinations): joining the cached pieces takes a microsecond.
        intro = instruct.intro(i_intro, _entry(problem)) + instruct.FENCE_OPEN
        head = (
            self._tokens(("chat-intro", task, i_intro), intro)
            + self._tokens(("chat-prefix", task, form), prefixes.get(form, prefixes["whole_prompt"]))
            + self._tokens((task, kind, index), body)
            + self._tokens(("chat-outro", close, i_outro), close + instruct.outro(i_outro))
        )
        return SyntheticSample(key, kind, head, 0, eos=True)

    def _prefixes_for(self, problem: Problem) -> dict[str, str]:
        prefixes = self._prefixes.get(problem.task_id)
        if prefixes is None:
            prefixes = instruct.function_prefixes(problem.prompt, _entry(problem))
            if "function" not in prefixes:
                whole = kinds.answer_is_whole_code(problem, self._references[problem.task_id])
                first = "body_only" if whole else "whole_prompt"  # the form used: the dict's first
                prefixes = {first: prefixes[first], "whole_prompt": prefixes["whole_prompt"]}
            self._prefixes[problem.task_id] = prefixes
        return prefixes

    def _tokens(self, key: tuple, text: str) -> tuple[str, ...]:
        tokens = self._pieces.get(key)
        if tokens is None:
            tokens = self._pieces[key] = split_tokens(text)
        return tokens

    def sample_text(self, sample: SyntheticSample, tokens: int) -> str:
        """The first `tokens` tokens of a sample as text (for tests and tools)."""
        return "".join(self.token(sample, k) for k in range(tokens))

    def token(self, sample: SyntheticSample, k: int) -> str:
        head = sample.head
        if k < len(head):
            return head[k]
        return self.filler.token(sample.filler_start + k - len(head))

    def _generic(self, prompt: str, sample_seed: int | None) -> SyntheticSample:
        u = _uniforms(self.seed, prompt, sample_seed)[0]
        start = int(u * len(self.filler.tokens))
        return SyntheticSample(("generic", start), "generic", (), start)

    def _answers_for(self, problem: Problem) -> _Answers:
        answers = self._answers.get(problem.task_id)
        if answers is None:
            found = mutants(problem.prompt, self._references[problem.task_id], _entry(problem))
            call = _example_call(problem)
            rate = self._rates[problem.task_id]
            answers = _Answers(problem, rate, found, call, kinds.trailers(problem))
            self._answers[problem.task_id] = answers
        return answers


def solve_rates(task_ids: Sequence[str], seed: int) -> dict[str, float]:
    """Each task's chance that a sample is correct: stratified quantiles, shuffled by seed."""
    order = sorted(task_ids)
    random.Random(f"solve-rates/{seed}").shuffle(order)
    n = len(order)
    return {task: rate_quantile((i + 0.5) / n) for i, task in enumerate(order)}


def rate_quantile(u: float) -> float:
    """The solve-rate distribution's quantile function (never solved below NEVER_SOLVED)."""
    if u < NEVER_SOLVED:
        return 0.0
    v = (u - NEVER_SOLVED) / (1.0 - NEVER_SOLVED)
    return (1.0 - (1.0 - v) ** (1.0 / RATE_B)) ** (1.0 / RATE_A)


def _uniforms(seed: int, subject: str, sample_seed: int | None) -> tuple[float, float, float, float]:
    """Four independent uniforms in [0, 1) from a stable hash (not Python's salted hash())."""
    digest = hashlib.blake2b(f"{seed}\0{subject}\0{sample_seed}".encode(), digest_size=16).digest()
    a, b, c, d = (int.from_bytes(digest[i : i + 4], "little") / 2**32 for i in range(0, 16, 4))
    return a, b, c, d


def _pick_kind(found: Sequence[Mutant], u: float) -> str:
    kinds = [k for k in KINDS if any(m.kind == k for m in found)]
    total = sum(KIND_WEIGHTS[k] for k in kinds)
    acc = 0.0
    for kind in kinds:
        acc += KIND_WEIGHTS[kind] / total
        if u < acc:
            return kind
    return kinds[-1]


def _example_call(problem: Problem) -> str:
    """The first doctest-style call of the entry point in the prompt, else a bare call."""
    match = re.search(rf">>>\s*({re.escape(_entry(problem))}\(.*\))\s*$", problem.prompt, re.MULTILINE)
    return match.group(1) if match else f"{_entry(problem)}()"


# A payload's entry point (HumanEval, MBPP, call-based); a whole program has none.
def _entry(problem: Problem) -> str:
    return problem.payload.get("entry_point") or ""
