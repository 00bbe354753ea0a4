"""`engine report`: on hand-made stores and on real runs made with the simulator."""

import csv
import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
from fleet_process import ENGINE, simulated_fleet

from engine import report
from engine.analysis.plots import plot
from engine.records import Sample
from engine.store import Store, StoredVerdict
from metrics.passk import pass_at_k_table

PROBLEMS, SAMPLES = 12, 24


def test_power_law_fit_recovers_the_exponent():
    ks = [1, 2, 5, 10, 20, 50, 100]
    fail = [0.4 * k**-0.35 for k in ks]
    fit = report.fit_power_law(ks, fail)
    assert fit.a == pytest.approx(0.4) and fit.b == pytest.approx(-0.35) and fit.r2 == pytest.approx(1.0)
    assert report.fit_power_law([1, 2], [0.5, 0.4]) is None
    assert report.fit_power_law([1, 2, 5, 10], [0.5, 0.0, 0.0, 0.0]) is None  # zeros cannot be fitted


def make_store(path, rates, samples, infra_every=0, seed=1):
    """A run with known per-problem rates; every infra_every-th sample an infra_error."""
    store = Store.open(path)
    rng = np.random.default_rng(seed)
    for t, rate in enumerate(rates):
        for i in range(samples):
            store.stage_sample(Sample(f"T/{t}", i, f"x{i % 3}", 3 + t, "stop", "s", 0.0, None, 0.0))
            verdict = "passed" if rng.random() < rate else "failed"
            if infra_every and i % infra_every == infra_every - 1:
                verdict = "infra_error"
            store.stage_verdict(
                StoredVerdict(f"T/{t}", i, verdict, "", "", 0.01, "nsjail", {"timeout_s": 2 + t})
            )
    store.set_meta("sampling", {"model": "m", "temperature": 0.8, "dataset": "humaneval@abc"})
    store.close()


def test_report_of_a_stored_run_excludes_infra_errors_from_n(tmp_path):
    make_store(tmp_path, [t / 20 for t in range(20)], 33, infra_every=11)
    c = report.curve(str(tmp_path))
    # 3 of 33 samples per problem are infra errors: n = 30, and they are reported as excluded
    assert c["samples"] == 600 and c["n"] == 30 and c["excluded"] == {"infra_error": 60}
    assert sum(c["verdicts"].values()) == 600 and c["model"] == "m"
    ks = [int(k) for k in c["curve"]]
    assert ks[0] == 1 and ks[-1] == 30
    values = list(c["curve"].values())
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:]))  # pass@k never falls with k
    assert c["coverage"] == c["curve"]["30"] and c["fit"]["b"] < 0
    assert c["distribution"]["never_solved"] >= 1  # rate 0
    assert c["cost"]["tokens_per_sample"] == pytest.approx(np.mean([3 + t for t in range(20)]))
    assert c["provenance"]["sandbox"]["limits"] == {"timeout_s": [2, 21]}
    assert c["provenance"]["dataset"] == "humaneval@abc" and c["provenance"]["sampling"] == {
        "temperature": 0.8
    }
    from engine.analysis.text import render

    text = render([c])
    assert (
        "coverage (pass@30)" in text
        and "(d) beta-binomial likelihood" in text
        and "60 infra_error excluded" in text
    )
    plot([c, c], tmp_path / "r.png", [("GPT-4o pass@1", 0.902)])
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_report_when_nothing_or_everything_passes_says_so(tmp_path, rate):
    make_store(tmp_path, [rate] * 5, 10)
    c = report.curve(str(tmp_path))
    assert all(not f["ok"] and f["note"] for f in c["fits"].values())
    report.make_report(
        [str(tmp_path)], report.Settings(boots=20), None, str(tmp_path / "p.png"), False, None, []
    )
    assert (tmp_path / "p.html").is_file()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Simulated sweeps of the first 12 HumanEval problems, 24 samples each: two uniform (two
    sampling seeds) and one until-solved with the first one's seed."""
    work = tmp_path_factory.mktemp("runs")
    with simulated_fleet(work) as hosts:
        for name, seed, policy in (
            ("run1", "0", "uniform"),
            ("run2", "1", "uniform"),
            ("solved", "0", "until-solved"),
        ):
            subprocess.run(
                [
                    *ENGINE,
                    "run",
                    "--servers",
                    str(hosts),
                    "--samples",
                    str(SAMPLES),
                    "--limit",
                    str(PROBLEMS),
                    "--out",
                    str(work / name),
                    "--metrics-port",
                    "0",
                    "--workers",
                    "2",
                    "--seed",
                    seed,
                    "--policy",
                    policy,
                ],
                check=True,
                capture_output=True,
                timeout=240,
            )
    return work


def engine_report(cwd, *args):
    return subprocess.run([*ENGINE, "report", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_report_of_two_simulated_runs(two_runs, tmp_path):
    runs = [str(two_runs / "run1"), str(two_runs / "run2")]
    done = engine_report(
        tmp_path,
        *runs,
        "--json",
        "--table",
        "t.parquet",
        "--backtest",
        "6",
        "--reference",
        "GPT-4o pass@1=0.902",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    # several runs: the figure goes to the current directory, never into a run's own
    assert summary["plot"] == "report.png" and (tmp_path / "report.png").is_file()
    assert not (two_runs / "run1" / "report.png").exists()
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    assert summary["references"] == [{"label": "GPT-4o pass@1", "value": 0.902}]
    assert [r["out"] for r in summary["runs"]] == runs and summary["out"] == runs[0]
    for run, dir_ in zip(summary["runs"], runs):
        store = Store.open(dir_, create=False)
        counts = store.pass_counts()
        store.close()
        assert run["samples"] == PROBLEMS * SAMPLES and run["n"] == SAMPLES
        assert run["pass_at_k"] == {str(k): round(v, 6) for k, v in pass_at_k_table(counts).items()}
        assert set(run["fits"]) == {"loglog_fail", "loglog_neglog_pass", "monkeys_coverage", "beta_binomial"}
        for fit in run["fits"].values():
            assert fit["ok"] and set(fit["predict"]) == {"100", "1000", "10000"}
            assert (
                fit["predict"]["10000"]["lo"]
                <= fit["predict"]["10000"]["value"]
                <= fit["predict"]["10000"]["hi"]
            )
        iv = run["intervals"]["1"]
        assert iv["lo"] <= iv["value"] <= iv["hi"] and iv["se"] > 0
        assert run["backtest"]["m"] == 6 and run["backtest"]["k"] == SAMPLES
        assert run["provenance"]["model"] and run["provenance"]["sandbox"]["limits"]["timeout_s"]
        assert run["cost"]["tokens_at_k"][str(SAMPLES)] == run["tokens"]
    rows = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert len(rows) == 2 * PROBLEMS
    store = Store.open(runs[0], create=False)
    counts = store.pass_counts()
    store.close()
    assert {r["task_id"]: (r["n"], r["c"]) for r in rows if r["run"] == runs[0]} == counts


def test_report_of_one_run_to_a_named_file_with_a_csv_table(two_runs, tmp_path):
    run = str(two_runs / "run2")
    done = engine_report(tmp_path, run, "--plot", "figs/one.png", "--table", "t.csv", "--target", "0.9")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "figs" / "one.png").is_file() and (tmp_path / "figs" / "one.html").is_file()
    assert "k for 90%" in done.stdout and "(c) coverage = exp(a k^b)" in done.stdout
    with open(tmp_path / "t.csv") as source:
        rows = list(csv.DictReader(source))
    assert len(rows) == PROBLEMS and all(int(r["n"]) == SAMPLES for r in rows)
    assert all((r["first_pass"] == "") == (r["c"] == "0") for r in rows)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--reference", "GPT-4o"], "LABEL=VALUE"),
        (["--reference", "x=1.5"], "LABEL=VALUE"),
        (["--backtest", str(SAMPLES)], "between 1 and 23"),
        (["--table", "t.txt"], ".csv or .parquet"),
        (["--target", "1"], "--target"),
    ],
)
def test_bad_report_input_is_one_line_and_exit_2(two_runs, tmp_path, args, message):
    done = engine_report(tmp_path, str(two_runs / "run1"), "--no-plot", *args)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_report_of_a_directory_without_a_run_is_exit_2(tmp_path):
    done = engine_report(tmp_path, str(tmp_path))
    assert done.returncode == 2 and "holds no run" in done.stderr


def test_until_solved_run_is_a_prefix_of_the_uniform_run_and_the_report_headlines_the_likelihood(
    two_runs, tmp_path
):
    """Same seeds, so the until-solved run's samples are the uniform run's first ones: each
    problem stops in the request that brought its first pass (or at 24), the share solved equals
    the uniform run's coverage, fewer tokens are spent, and the report says Chen's estimate is
    biased and headlines the likelihood one, which lands nearer the uniform run's unbiased pass@1."""

    def verdicts(run):
        store = Store.open(two_runs / run, create=False)
        rows = {(r["task_id"], r["sample_index"]): r for r in store.rows()}
        store.close()
        return rows

    uniform, solved = verdicts("run1"), verdicts("solved")
    assert set(solved) < set(uniform)
    assert all(solved[key]["verdict"] == uniform[key]["verdict"] for key in solved)
    for task in {t for t, _ in uniform}:
        got = sorted(i for t, i in solved if t == task)
        assert got == list(range(len(got)))
        passes = [i for i in got if solved[(task, i)]["verdict"] == "passed"]
        first = min(
            [i for (t, i), r in uniform.items() if t == task and r["verdict"] == "passed"], default=None
        )
        assert (
            (len(got) == SAMPLES)
            if first is None
            else (passes and passes[0] == first and len(got) <= 2 * first + 2)
        )

    done = engine_report(
        tmp_path, str(two_runs / "run1"), str(two_runs / "solved"), "--json", "--plot", "out"
    )
    assert done.returncode == 0, done.stderr
    assert 'class="note">under the until-solved policy' in (tmp_path / "out" / "report.html").read_text()
    full, adaptive = json.loads(done.stdout)["runs"]
    assert full["estimate"]["headline"] == "chen" and full["estimate"]["chen_unbiased"]
    assert adaptive["policy"] == {"name": "until-solved", "stop_after": 1}
    assert adaptive["estimate"]["headline"] == "beta_binomial" and not adaptive["estimate"]["chen_unbiased"]
    assert "biased" in adaptive["estimate"]["note"]
    assert "until-solved stopping re-simulated" in adaptive["fits"]["beta_binomial"]["intervals"]
    assert "re-simulated" not in full["fits"]["beta_binomial"]["intervals"]
    assert adaptive["coverage"] == pytest.approx(full["coverage"])
    assert adaptive["tokens"] < full["tokens"]
    truth = full["pass_at_k"]["1"]
    naive, likelihood = adaptive["pass_at_k"]["1"], adaptive["estimate"]["beta_binomial"]["1"]["value"]
    assert abs(likelihood - truth) < abs(naive - truth)


def test_report_of_a_run_whose_every_result_is_an_infra_error(tmp_path):
    """Nothing counts in n: exit 0 with nothing on stderr (no warning either), the JSON says 0
    samples and the 12 excluded, the table has every problem with n = 0 and no p_hat, and the
    figure and HTML are still written."""
    make_store(tmp_path / "run", [0.5] * 3, 4, infra_every=1)
    done = engine_report(
        tmp_path, str(tmp_path / "run"), "--json", "--table", "t.csv", "--plot", "f.png", "--backtest", "2"
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    summary = json.loads(done.stdout)
    assert summary["samples"] == 0 and summary["excluded"] == {"infra_error": 12} and summary["fits"] == {}
    assert summary["coverage"] is None and summary["backtest"] is None
    with open(tmp_path / "t.csv") as source:
        rows = list(csv.DictReader(source))
    assert [(r["n"], r["p_hat"], r["excluded"]) for r in rows] == [("0", "", "4")] * 3
    assert (tmp_path / "f.png").is_file() and (tmp_path / "f.html").is_file()


def verified_count(out) -> int:
    try:
        store = Store.open(out, create=False)
    except Exception:
        return 0  # not created yet
    try:
        return sum(n for n, _ in store.pass_counts().values())
    finally:
        store.close()


def test_report_of_a_run_still_in_progress(tmp_path):
    """`engine report` reads a store that `engine run` is writing: once a uniform sweep (far too
    long to finish here) has 20 verdicts, two reports in a row each exit 0 with a consistent
    JSON (samples counted by verdict, never more than the target, the second no fewer than the
    first); the run, still going, is then stopped by SIGINT and exits 0 (resumable)."""
    import signal
    import time

    out = tmp_path / "run"
    with simulated_fleet(tmp_path, 2, 2_000) as hosts:
        run = subprocess.Popen(
            [
                *ENGINE,
                "run",
                "--servers",
                str(hosts),
                "--samples",
                "1000",
                "--limit",
                "10",
                "--out",
                str(out),
                "--metrics-port",
                "0",
                "--workers",
                "2",
                "--request-n",
                "4",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while verified_count(out) < 20 and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            seen = []
            for _ in range(2):
                done = engine_report(tmp_path, str(out), "--json", "--no-plot", "--bootstrap", "20")
                assert done.returncode == 0, done.stderr
                summary = json.loads(done.stdout)
                assert (
                    20 <= summary["samples"] < 10_000
                    and sum(summary["verdicts"].values()) == summary["samples"]
                )
                seen.append(summary["samples"])
            assert seen == sorted(seen)  # the store only grows
            assert run.poll() is None, "the run was still going while reported"
        finally:
            run.send_signal(signal.SIGINT)
            _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
