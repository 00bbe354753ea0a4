"""`engine report`: pass@k with intervals, scaling-law fits and plots, one analysis per run."""

from __future__ import annotations

import click

from engine.cli import emit
from engine.cli.options import LINE


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(),
    default=None,
    help="Figure file, or a directory for report.png; report.html goes beside it"
    " [default: the run's directory for one run, the current directory for several].",
)
@click.option("--no-plot", is_flag=True, help="Print only (no figure, no HTML).")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the first run's report (all runs under 'runs') as JSON."
)
@click.option(
    "--table",
    type=click.Path(dir_okay=False),
    default=None,
    help="Per-problem table, FILE.csv or FILE.parquet.",
)
@click.option(
    "--target",
    default=0.95,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Coverage whose k each fit predicts.",
)
@click.option(
    "--backtest",
    "backtest_m",
    type=click.IntRange(min=1),
    default=None,
    help="Fit on the first M samples of every problem and score the prediction of pass@n.",
)
@click.option(
    "--reference",
    "references",
    multiple=True,
    type=LINE,
    metavar="'LABEL=VALUE'",
    help="A horizontal line, e.g. 'GPT-4o pass@1=0.902' (repeatable).",
)
@click.option(
    "--bootstrap",
    "boots",
    default=1000,
    show_default=True,
    type=click.IntRange(min=10),
    help="Bootstrap replicates over problems.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the bootstraps.")
def command(
    run_dirs: tuple[str, ...],
    plot_path: str | None,
    no_plot: bool,
    as_json: bool,
    table: str | None,
    target: float,
    backtest_m: int | None,
    references: tuple[str, ...],
    boots: int,
    seed: int,
) -> None:
    """pass@k with intervals, four scaling-law fits with extrapolations, backtest, cost; one analysis per run."""
    from engine import report as rep
    from engine.analysis.scaling import Settings

    settings = Settings(boots=boots, parametric_boots=min(boots, 200), seed=seed, target=target)
    summary, text = rep.make_report(
        list(run_dirs), settings, backtest_m, plot_path, no_plot, table, list(references)
    )
    emit(summary, as_json, text)
