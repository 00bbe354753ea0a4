"""The synthetic model, its tokens and stop strings: pure functions, no server."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.tasks import load_problems
from vllm_sim.gpu.plans import PlanCache
from vllm_sim.gpu.stops import StopScanner
from vllm_sim.gpu.tokens import count_tokens, split_tokens
from vllm_sim.model.kinds import TRAILERS
from vllm_sim.model.mutations import KINDS, mutants
from vllm_sim.model.synthetic import SyntheticModel, rate_quantile

HUMANEVAL_STOPS = ("\ndef", "\nclass", "\nif", "\nprint", "\n#")


@pytest.fixture(scope="module")
def problems():
    return load_problems()


@pytest.fixture(scope="module")
def model(problems):
    return SyntheticModel(problems, seed=0)


# -- tokens ----------------------------------------------------------------------------------------


def test_prompt_token_counts_match_the_real_server():
    # usage.prompt_tokens in the real transcripts
    assert count_tokens("import os\n") == 3
    assert count_tokens("    return x\n\n") == 4
    assert count_tokens("a") == 1
    assert count_tokens("x " * 450) == 451


@given(st.text())
def test_tokens_join_back_to_the_text(text):
    assert "".join(split_tokens(text)) == text


def test_tokens_are_bpe_sized_on_code(problems):
    text = "".join(p.prompt + p.payload["canonical_solution"] for p in problems)
    assert 3.0 < len(text) / len(split_tokens(text)) < 4.0


# -- stop strings (vLLM's rules) ---------------------------------------------------------------


def test_holds_back_what_could_become_a_stop_string():
    # transcripts/20: tokens "\n", "#", " ImportError" under stop "\ndef" arrive as "", "", "\n# ImportEr"
    scanner = StopScanner(("\ndef",))
    assert [scanner.feed(t) for t in ("\n", "#", " ImportError")] == ["", "", "\n# ImportEr"]
    assert scanner.flush() == "ror"


def test_stop_at_the_first_token_sends_empty_text():
    # transcripts/21, choice 1: "" then "" with finish_reason stop, stop_reason "\ndef"
    scanner = StopScanner(("\ndef",))
    assert scanner.feed("\n") == ""
    assert scanner.feed("def") == "" and scanner.stop_reason == "\ndef"


def test_first_stop_string_in_list_order_wins():
    scanner = StopScanner(("\nif", "\ndef"))
    assert scanner.feed("x\ndef y\nif") == "x\ndef y" and scanner.stop_reason == "\nif"


def test_include_stop_str_in_output():
    scanner = StopScanner(("\ndef",), include_stop_str_in_output=True)
    assert scanner.feed("a\nde") == "a\nde"
    assert scanner.feed("f b") == "f" and scanner.stop_reason == "\ndef"


@given(st.lists(st.sampled_from(["\n", "d", "ef", "def", "x", " ", "\nd", "e"]), max_size=30), st.data())
def test_streamed_text_is_the_text_cut_at_the_stop(pieces, data):
    text = "".join(pieces)
    stop = data.draw(st.sampled_from(["\ndef", "ef", "\n\n"]))
    scanner = StopScanner((stop,))
    out = []
    for piece in pieces:
        out.append(scanner.feed(piece))
        if scanner.stop_reason:
            break
    out.append(scanner.flush())
    cut = text.find(stop)
    assert "".join(out) == (text if cut < 0 else text[:cut])


# -- the synthetic model ---------------------------------------------------------------------


def test_samples_are_deterministic_across_instances(problems, model):
    other = SyntheticModel(problems, seed=0)
    for p in problems[:20]:
        for s in range(5):
            assert model.sample(p.prompt, s) == other.sample(p.prompt, s)
    assert model.sample("import os\n", 3) == other.sample("import os\n", 3)
    assert [model.sample(p.prompt, 1).key for p in problems[:20]] != [
        SyntheticModel(problems, seed=1).sample(p.prompt, 1).key for p in problems[:20]
    ]


def test_canonical_samples_are_the_canonical_solution(problems, model):
    plans = PlanCache(model)
    seen = 0
    for p in problems[:30]:
        for s in range(10):
            sample = model.sample(p.prompt, s)
            if sample.kind == "canonical":
                text = plans.get(sample, HUMANEVAL_STOPS).text(1000)
                assert (
                    text.startswith(p.payload["canonical_solution"])
                    and not text[len(p.payload["canonical_solution"]) :].strip()
                )
                seen += 1
    assert seen > 50


def test_wrong_samples_differ_and_every_kind_appears(problems, model):
    kinds = Counter()
    for p in problems:
        for s in range(30):
            sample = model.sample(p.prompt, s)
            kinds[sample.kind] += 1
            if sample.kind != "canonical":
                assert not "".join(sample.head).startswith(p.payload["canonical_solution"] + "\n")
    assert set(kinds) == {"canonical", *KINDS}


def test_solve_rate_is_the_share_of_canonical_samples(problems, model):
    for p in problems[:12]:
        rate = model.solve_rate(p.task_id)
        hits = sum(model.sample(p.prompt, s).kind == "canonical" for s in range(400))
        assert abs(hits / 400 - rate) < 4 * math.sqrt(rate * (1 - rate) / 400) + 0.01


def test_greedy_is_fixed_and_follows_the_solve_rate(problems, model):
    for p in problems[:30]:
        greedy = model.sample(p.prompt, None)
        assert greedy == model.sample(p.prompt, None)
        assert (greedy.kind == "canonical") == (model.solve_rate(p.task_id) >= 0.5)


def _pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of Chen et al. (2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1 - k / i for i in range(n - c + 1, n + 1))


def test_expected_estimator_is_one_minus_miss_probability():
    # E over c ~ Binomial(n, p) of the unbiased estimator equals 1 - (1 - p)^k, for any n >= k.
    n, k = 60, 10
    for p in (0.0, 0.02, 0.3, 0.9):
        expected = sum(
            math.comb(n, c) * p**c * (1 - p) ** (n - c) * _pass_at_k(n, c, k) for c in range(n + 1)
        )
        assert expected == pytest.approx(1 - (1 - p) ** k, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_fleet_pass_at_k_is_an_8b_models(problems, seed):
    model = SyntheticModel(problems, seed=seed)
    rates = [model.solve_rate(p.task_id) for p in problems]
    pass_at = {k: sum(1 - (1 - r) ** k for r in rates) / len(rates) for k in (1, 10, 100, 1000)}
    assert 0.50 <= pass_at[1] <= 0.60
    assert 0.75 <= pass_at[10] <= 0.85
    assert 0.86 <= pass_at[100] <= 0.93
    assert 0.92 <= pass_at[1000] <= 0.96
    # fail@k falls like a power law: similar log-slopes decade after decade
    slopes = [math.log10((1 - pass_at[k]) / (1 - pass_at[10 * k])) for k in (1, 10, 100)]
    assert all(0.15 < s < 0.5 for s in slopes)
    assert sum(r == 0 for r in rates) >= 3  # a few problems the model never solves


def test_rate_quantiles_are_monotone():
    qs = [rate_quantile(i / 1000) for i in range(1000)]
    assert qs == sorted(qs) and qs[0] == 0.0 and 0.99 < rate_quantile(0.9999) <= 1.0


def test_stop_sequences_cut_the_trailing_text(problems, model):
    plans = PlanCache(model)
    reasons = Counter()
    for p in problems[:40]:
        for s in range(4):
            sample = model.sample(p.prompt, s)
            plan = plans.get(sample, HUMANEVAL_STOPS)
            text = plan.text(2000)
            assert plan.stop_reason in HUMANEVAL_STOPS
            assert not any(stop in text for stop in HUMANEVAL_STOPS)
            reasons[plan.stop_reason] += 1
            free = plans.get(sample, ()).text(400)  # no stop strings: the model rambles on
            assert free.startswith(text) and len(free) > len(text) + 400
    assert len(reasons) >= 4  # the trailers end on different stop strings


def test_unknown_prompts_get_generic_code(model):
    sample = model.sample("import os\n", 5)
    assert sample.kind == "generic" and len(model.sample_text(sample, 200)) > 400


def test_trailers_start_a_new_top_level_statement():
    for trailer in TRAILERS:
        assert any(stop in trailer for stop in HUMANEVAL_STOPS)


# -- our own simulator's answers, run as programs ---------------------------------------------
# DEVELOPMENT CHECK on the simulator's own output (not untrusted code): `python -I` in a
# subprocess with a short timeout. Infinite-loop mutants are left out; they only time out.


def _passes(problem, body: str) -> bool:
    program = (
        problem.prompt
        + body
        + "\n"
        + problem.payload["test"]
        + "\n"
        + f"check({problem.payload['entry_point']})"
    )
    try:
        done = subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, timeout=10, cwd="/")
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def test_canonical_passes_and_mutants_fail_humaneval_tests(problems):
    picked = problems[::16]  # 11 problems, about 80 programs
    outcomes = Counter()
    for p in picked:
        assert _passes(p, p.payload["canonical_solution"]), p.task_id
        for m in mutants(p.prompt, p.payload["canonical_solution"], p.payload["entry_point"]):
            if m.kind != "infinite_loop":
                outcomes[_passes(p, m.body)] += 1
    assert outcomes[False] >= 0.85 * sum(outcomes.values()), outcomes
