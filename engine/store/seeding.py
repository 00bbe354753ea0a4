"""Dedup seeded from a run's store on resume: every verdict it holds is known again at once."""

from __future__ import annotations

import json

from sandbox import Limits, Outcome, Verdict
from sandbox.verifier import Verifier


def seed_from_store(verifier: Verifier, store) -> int:
    """Seed dedup with a run's verified samples (resume); returns how many were seeded."""
    if not verifier.dedup:
        return 0
    count = 0
    for task_id, _, completion, verdict, detail, output, backend, limits, cpu_s in store.verified():
        if verdict == "error" and (detail or "").startswith("sandbox"):
            continue  # an infrastructure error as an older engine recorded it
        try:
            known = {k: v for k, v in json.loads(limits or "{}").items() if k in Limits.__dataclass_fields__}
            known.setdefault("guards", False)  # verdicts stored before guards existed had none
            outcome = Outcome(
                Verdict(verdict),
                detail or "",
                0.0,
                backend or "",
                Limits(**known),
                output or "",
                cpu_s or 0.0,
            )
        except (ValueError, TypeError):
            continue
        verifier.seed(task_id, completion, outcome)
        count += 1
    return count
