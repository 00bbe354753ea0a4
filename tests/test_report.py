import numpy as np
import pytest

from engine import report
from engine.records import Sample
from engine.store import Store, StoredVerdict


def test_power_law_fit_recovers_the_exponent():
    ks = [1, 2, 5, 10, 20, 50, 100]
    fail = [0.4 * k**-0.35 for k in ks]
    fit = report.fit_power_law(ks, fail)
    assert fit.a == pytest.approx(0.4) and fit.b == pytest.approx(-0.35) and fit.r2 == pytest.approx(1.0)
    assert report.fit_power_law([1, 2], [0.5, 0.4]) is None
    assert report.fit_power_law([1, 2, 5, 10], [0.5, 0.0, 0.0, 0.0]) is None  # zeros cannot be fitted


def test_curve_of_a_stored_run_and_its_plot(tmp_path):
    store = Store.open(tmp_path)
    rng = np.random.default_rng(1)
    for t in range(20):
        rate = t / 20
        for i in range(30):
            store.stage_sample(Sample(f"T/{t}", i, "x", 3, "stop", "s", 0.0, None, 0.0))
            v = "passed" if rng.random() < rate else "failed"
            store.stage_verdict(StoredVerdict(f"T/{t}", i, v, "", "", 0.01, "nsjail", {}))
    store.set_meta("sampling", {"model": "m"})
    store.close()
    c = report.curve(str(tmp_path))
    assert c["samples"] == 600 and c["model"] == "m"
    ks = [int(k) for k in c["curve"]]
    assert ks[0] == 1 and ks[-1] == 30
    values = list(c["curve"].values())
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:]))  # pass@k never falls with k
    assert c["coverage"] == c["curve"]["30"]
    assert c["fit"]["b"] < 0
    text = report.render([c])
    assert "coverage (pass@30)" in text and "fail@k ~=" in text
    report.plot([c, c], tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
