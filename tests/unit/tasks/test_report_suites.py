"""`engine report` on multi-test runs: EvalPlus-style base and plus suites side by side (pass@k
on each, the gap, the base suite's false positives) and the mean fraction of tests passed, in
the JSON, the text and the HTML; single-test and old runs have neither.

Invariants: plus pass@k is the run's pass@k (pass@k counts `passed`); the gap at each k is base
minus plus; false positives are exactly the samples with base_passed and not passed; the mean
fraction is the mean of tests_passed / tests_total over the counted samples."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis.html import write_html
from engine.analysis.load import load_run
from engine.analysis.text import render
from engine.records import Problem, Sample
from engine.report import analyse_run
from engine.store import Store, StoredVerdict
from metrics.passk import pass_at_k_table
from sandbox import Limits, Outcome, Verdict

# A sample of an EvalPlus-style run: (passed plus, passed base); plus implies base.
evalplus_sample = st.sampled_from([(True, True), (False, True), (False, False)])


def stored(run, problems: list[list[tuple]], kind: str) -> None:
    """One problem per list; each sample (passed, base_passed, tests_passed, tests_total)."""
    store = Store.open(run)
    store.save_problems([Problem(f"p{i}", "prompt", kind, {}) for i in range(len(problems))])
    for i, samples in enumerate(problems):
        for j, (ok, base, passed, total) in enumerate(samples):
            verdict = Verdict.passed if ok else Verdict.failed
            outcome = Outcome(
                verdict, "", 0.01, "nsjail", Limits(), "", 0.0, False, False, passed, total, base
            )
            store.stage_sample(Sample(f"p{i}", j, f"c{j}", 5, "stop", "s", 1.0, None, 2.0))
            store.stage_verdict(StoredVerdict.of(f"p{i}", j, outcome))
    store.close()


def report_of(run, tmp_path) -> tuple[dict, str, str]:
    c = analyse_run(load_run(str(run)))
    html = tmp_path / "r.html"
    write_html([c], None, html)
    return c, render([c]), html.read_text()


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 6),
    problems=st.lists(st.lists(evalplus_sample, min_size=6, max_size=6), min_size=1, max_size=5),
)
def test_base_and_plus_side_by_side(tmp_path_factory, n, problems):
    tmp = tmp_path_factory.mktemp("r")
    samples = [[(ok, base, 3 if ok else 1, 3) for ok, base in p[:n]] for p in problems]
    stored(tmp / "run", samples, "evalplus")
    c, text, html = report_of(tmp / "run", tmp)
    s = c["suites"]
    base = pass_at_k_table({i: (len(p), sum(b for _, b, *_ in p)) for i, p in enumerate(samples)})
    assert s["plus"]["pass_at_k"] == c["pass_at_k"]
    assert s["base"]["pass_at_k"] == {str(k): round(v, 6) for k, v in base.items()}
    for k, gap in s["gap"]["pass_at_k"].items():
        assert abs(gap - (s["base"]["pass_at_k"][k] - s["plus"]["pass_at_k"][k])) < 1e-5 and gap >= 0
    wrong = [(ok, b) for p in samples for ok, b, *_ in p if b and not ok]
    assert s["gap"]["false_positives"] == len(wrong)
    assert s["gap"]["problems"] == sum(any(b and not ok for ok, b, *_ in p) for p in samples)
    fractions = [t / total for p in samples for _, _, t, total in p]
    assert c["tests"] == {
        "samples": len(fractions),
        "mean_fraction_passed": round(sum(fractions) / len(fractions), 6),
    }
    assert "false positives of the base suite" in text and "Base and plus suites" in html
    assert "tests passed: mean fraction" in text


def test_a_multi_test_run_without_suites_reports_the_fraction_only(tmp_path):
    stored(tmp_path / "run", [[(True, None, 4, 4), (False, None, 1, 4)]], "stdio")
    c, text, html = report_of(tmp_path / "run", tmp_path)
    assert c["suites"] is None and c["tests"] == {"samples": 2, "mean_fraction_passed": 0.625}
    assert "base" not in text and "Base and plus" not in html and "mean fraction 0.6250" in html


def test_a_single_test_run_has_neither(tmp_path):
    stored(tmp_path / "run", [[(True, None, None, None)], [(False, None, None, None)]], "humaneval")
    c, text, html = report_of(tmp_path / "run", tmp_path)
    assert c["suites"] is None and c["tests"] is None
    assert "tests passed" not in text and "Tests passed" not in html
    # Limits() leaves cpu_time_s unset (None): the report shows no range for it instead of failing
    assert "cpu_time_s" not in c["provenance"]["sandbox"]["limits"]


def test_an_empty_run_has_neither(tmp_path):
    stored(tmp_path / "run", [], "evalplus")
    c, _, _ = report_of(tmp_path / "run", tmp_path)
    assert c["suites"] is None and c["tests"] is None
