"""A run directory with three samples of HumanEval/0: passed, timeout, not yet verified."""

from pathlib import Path

from engine.records import Sample
from engine.store import Store, StoredVerdict


def make_run(path: Path) -> None:
    store = Store.open(path)
    for i in range(3):
        store.stage_sample(
            Sample("HumanEval/0", i, f"    return {i}\\n", 4, "stop", "http://s:1", 1.0, None, 2.0)
        )
    store.stage_verdict(StoredVerdict("HumanEval/0", 0, "passed", "", "", 0.02, "nsjail", {"timeout_s": 3.0}))
    store.stage_verdict(
        StoredVerdict("HumanEval/0", 1, "timeout", "limit", "", 3.0, "nsjail", {"timeout_s": 3.0})
    )
    store.close()
