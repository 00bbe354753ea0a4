"""`engine status`: where a run stands, also while another process runs it."""

from __future__ import annotations

import click

from engine.cli import emit


@click.command("status")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def command(run_dir: str, as_json: bool) -> None:
    """Progress of a run, also while it runs: done, remaining, rate, ETA, current pass@k."""
    from engine.status import render, run_status

    state = run_status(run_dir)
    emit(state, as_json, render(state))
