"""`engine export`: one row per sample of a run, as JSONL or Parquet."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "parquet"]),
    default=None,
    help="[default: from --out's name: .parquet or .jsonl; jsonl for '-']",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="File to write; '-' writes to stdout.",
)
def command(run_dir: str, fmt: str | None, out: str) -> None:
    """Write one row per sample: task_id, sample_index, completion, passed, result, and the rest."""
    from engine.export import export, format_for

    fmt = fmt or format_for(out)
    count = export(run_dir, fmt, out)
    click.echo(f"engine export: {count:,} samples ({fmt}) -> {'stdout' if out == '-' else out}", err=True)
