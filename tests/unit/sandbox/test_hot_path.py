"""The per-sample shortcuts (issue 14) give exactly what the long way gave."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from engine.tasks.base import Judgement
from sandbox.limits import Limits
from sandbox.protocol import StatusParser
from sandbox.verdicts import Outcome, Verdict
from sandbox.verifier import _with_judgement


def test_a_limits_dict_is_a_fresh_copy_each_time_and_keeps_int_and_float_apart():
    first = Limits(timeout_s=3).to_dict()
    first["timeout_s"] = 99
    assert Limits(timeout_s=3).to_dict()["timeout_s"] == 3
    assert json.dumps(Limits(timeout_s=3).to_dict()["timeout_s"]) == "3"
    assert json.dumps(Limits(timeout_s=3.0).to_dict()["timeout_s"]) == "3.0"


@given(timeout=st.floats(0.01, 100), cpu=st.one_of(st.none(), st.floats(0.01, 100)), guards=st.booleans())
def test_a_limits_dict_says_what_its_fields_say(timeout, cpu, guards):
    limits = Limits(timeout_s=timeout, cpu_time_s=cpu, guards=guards)
    for _ in range(2):  # made, then from the cache
        assert limits.to_dict() == {
            "timeout_s": timeout,
            "cpu_time_s": cpu,
            "memory_mb": 1024,
            "max_processes": 32,
            "max_file_mb": 16,
            "max_open_files": 64,
            "tmp_mb": 64,
            "max_output_bytes": 16 * 1024,
            "guards": guards,
            "jail_memory_mb": 2048,
        }


def test_records_that_are_not_strict_json_are_ignored_like_any_garbage():
    parser = StatusParser("ab")
    parser.feed(b'{"event": "failed", "type": "X", "message": NaN}\n{"event": "passed", "nonce": "ab"}\n')
    assert parser.passed and parser.failure is None


OUTCOME = Outcome(Verdict.failed, "AssertionError", 0.1, "nsjail", Limits(), "out")


@given(
    verdict=st.sampled_from(list(Verdict)),
    detail=st.sampled_from(["AssertionError", "check() returned", ""]),
    counts=st.one_of(st.none(), st.tuples(st.integers(0, 3), st.integers(0, 3))),
    base=st.one_of(st.none(), st.booleans()),
)
def test_a_judged_outcome_carries_the_judgement_whether_or_not_it_changed_anything(
    verdict, detail, counts, base
):
    passed, total = counts if counts else (None, None)
    judgement = Judgement(verdict, detail, tests_passed=passed, tests_total=total, base_passed=base)
    judged = _with_judgement(OUTCOME, judgement)
    assert (judged.verdict, judged.detail) == (verdict, detail)
    assert (judged.tests_passed, judged.tests_total, judged.base_passed) == (passed, total, base)
    assert (judged.wall_s, judged.backend, judged.limits, judged.output) == (0.1, "nsjail", Limits(), "out")
