"""The `engine` command line: a thin click layer over the Python API.

Every error the user can cause ends as one line on stderr and exit status 2.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Coroutine

import click
import orjson
from tqdm import tqdm

from engine.cli_options import HTTP_HEADER, LINE, fleet_headers, sandbox_options, sandbox_settings, use_envvars
from engine.errors import EngineError, FleetError, InputError, SandboxError, StorageError
from sandbox.pool import default_workers

log = logging.getLogger("engine")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _TqdmHandler(logging.Handler):
    """Log lines that do not tear the progress bar apart."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never take the sweep down
            self.handleError(record)


def _setup_logging(verbose: int) -> None:
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("engine").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("sandbox").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def run_async(coro: Coroutine):
    """Run on uvloop; translate the errors a user can cause into one line and exit 2."""
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except (InputError, FleetError, SandboxError, StorageError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        click.echo("engine: interrupted; what was collected is saved, run the same command to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)


def fail(message: str) -> None:
    one_line = " ".join(message.split())  # a message may quote what it was given, newlines and all
    click.echo(f"engine: error: {one_line}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def emit(summary: dict, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(summary) + b"\n")
        sys.stdout.flush()
    else:
        click.echo(text)


class _OneLineErrors(click.Group):
    """Click's usage errors are three lines; ours are one, with the same exit status 2."""

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            prefix = f"{exc.ctx.command_path}: " if getattr(exc, "ctx", None) else "engine: "
            click.echo(f"{prefix}error: {exc.format_message()}", err=True)
            sys.exit(EXIT_BAD_INPUT if isinstance(exc, click.UsageError) else exc.exit_code)
        except click.exceptions.Abort:
            sys.exit(EXIT_INTERRUPTED)
        except EngineError as exc:
            fail(str(exc))


class _EngineGroup(_OneLineErrors):
    """Some commands load their module only when asked for: `engine verify` never imports the
    simulator (vllm_sim: aiohttp's server, numpy)."""

    lazy_commands = {"simulate": "vllm_sim.command:simulate"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy_commands and name not in self.commands:
            module, attribute = self.lazy_commands[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
            use_envvars(self, "ENGINE")
        return super().get_command(ctx, name)


@click.group(cls=_EngineGroup, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "ENGINE"})
@click.version_option(package_name="engine")
def main() -> None:
    """Repeated sampling with execution-based verification.

    Every option can also be set as an environment variable ENGINE_<COMMAND>_<OPTION>,
    e.g. ENGINE_RUN_SAMPLES=1000.
    """


@main.command()
@click.option("--servers", "servers", required=True, type=click.Path(dir_okay=False), help="Hosts file: one vLLM base URL per line.")
@click.option("--model", default=None, help="Model name; default: what the servers' /v1/models report.")
@click.option("--dataset", default="humaneval", show_default=True, help="'humaneval' or a JSONL/Parquet file with task_id, prompt, test, entry_point.")
@click.option("--samples", default=100, show_default=True, type=click.IntRange(min=1), help="Samples per problem.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Only the first P problems.")
@click.option("--out", default="runs/default", show_default=True, type=click.Path(file_okay=False), help="Run directory; the same command again resumes it.")
@click.option("--metrics-port", default=9400, show_default=True, type=click.IntRange(0, 65535), help="Port of /metrics (0: any free port).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address /metrics binds to.")
@click.option("--no-metrics", is_flag=True, help="Do not serve /metrics.")
@click.option("--api", type=click.Choice(["completions", "chat"]), default="completions", show_default=True, help="chat: /v1/chat/completions for instruct models, code taken from the answer's ```python block.")
@click.option("--system-prompt", default=None, help="System prompt of --api chat [default: ask for the whole function in a python block].")
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(min=0.0))
@click.option("--top-p", default=0.95, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True))
@click.option("--max-tokens", default=512, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int, help="Base seed; each sample's seed derives from it.")
@click.option("--request-n", default=64, show_default=True, type=click.IntRange(1, 1024), help="Samples per request at most.")
@click.option("--max-seqs-per-server", default=256, show_default=True, type=click.IntRange(min=1), help="Sequences in flight per server.")
@click.option("--queue-size", default=None, type=click.IntRange(min=1), help="Samples held from request to verdict [default: 2 x servers x --max-seqs-per-server, at least 1024].")
@click.option("--retries", default=3, show_default=True, type=click.IntRange(min=0), help="Retries of a failed request's unfinished samples.")
@click.option("--idle-timeout", default=120.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds without a byte before a stream counts as failed.")
@click.option("--request-timeout", default=900.0, show_default=True, type=click.FloatRange(min=1.0), help="Seconds one request may take in all, first byte to last; then its unfinished samples are retried.")
@click.option("--drain-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.0), help="On SIGINT/SIGTERM, seconds live streams and queued samples may still finish.")
@click.option("--new-run", is_flag=True, help="Start afresh in --out; an existing run there is kept as results.<time>.sqlite.")
@click.option("--api-key", default=None, metavar="KEY",
              help="Sent as 'Authorization: Bearer KEY' on every request to the fleet (vllm serve --api-key).")
@click.option("--header", "headers", multiple=True, type=HTTP_HEADER, metavar="NAME:VALUE",
              help="An HTTP header sent on every request to the fleet; repeatable (in the environment variable:"
                   " one per line).")
@click.option("--startup-timeout", default=300.0, show_default=True, type=click.FloatRange(min=0.0), help="Seconds to wait for servers that are still loading their model.")
@click.option("--workers", default=default_workers(), show_default=True, type=click.IntRange(min=1), help="Parallel sandboxes [default: 2 per core].")
@click.option("--policy", type=click.Choice(["uniform", "until-solved", "hardest-first"]), default="uniform", show_default=True,
              help="uniform: --samples per problem; until-solved: stop a problem after --stop-after passes;"
                   " hardest-first: each request to the problem with the fewest passes.")
@click.option("--stop-after", default=1, show_default=True, type=click.IntRange(min=1), help="until-solved: passes that end a problem.")
@sandbox_options
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as one JSON object.")
@click.option("-v", "--verbose", count=True, help="One log line per sample transition.")
def run(**opts) -> None:
    """Sample every problem N times on a vLLM fleet and verify each sample in a sandbox."""
    from engine.run import RunConfig, exit_status, run_sweep
    from engine.runner import SweepOptions
    from engine.summary import render

    _setup_logging(opts["verbose"])
    backend, dedup, timing, limits = sandbox_settings(opts)
    if opts["queue_size"] is not None and opts["request_n"] > opts["queue_size"]:
        raise click.BadParameter("must not exceed --queue-size", param_hint="--request-n")
    if opts["request_n"] > opts["max_seqs_per_server"]:
        raise click.BadParameter("must not exceed --max-seqs-per-server", param_hint="--request-n")
    cfg = RunConfig(
        servers=opts["servers"], out=opts["out"], model=opts["model"], dataset=opts["dataset"],
        samples=opts["samples"], limit=opts["limit"], temperature=opts["temperature"], top_p=opts["top_p"],
        max_tokens=opts["max_tokens"], seed=opts["seed"], api=opts["api"],
        **({"system_prompt": opts["system_prompt"]} if opts["system_prompt"] is not None else {}),
        options=SweepOptions(
            samples=opts["samples"], request_n=opts["request_n"], max_seqs_per_server=opts["max_seqs_per_server"],
            queue_size=opts["queue_size"], retries=opts["retries"], idle_timeout_s=opts["idle_timeout"],
            request_timeout_s=opts["request_timeout"],
        ),
        workers=opts["workers"], limits=limits, sandbox=backend, dedup=dedup, timing=timing,
        metrics_host=opts["metrics_host"], metrics_port=None if opts["no_metrics"] else opts["metrics_port"],
        startup_timeout_s=opts["startup_timeout"], drain_timeout_s=opts["drain_timeout"], new_run=opts["new_run"],
        progress=not opts["as_json"] or sys.stderr.isatty(),
        headers=fleet_headers(opts["api_key"], opts["headers"]),
    )
    from dataclasses import replace

    cfg = replace(cfg, options=replace(cfg.options, policy=opts["policy"], stop_after=opts["stop_after"]))
    summary = run_async(run_sweep(cfg))
    title = (
        f"engine run: {summary['samples']:,} samples of {summary['problems']} problems, model {summary['model']},"
        f" {summary['tokens']:,} completion tokens; this session {summary['new_samples']:,} samples in"
        f" {summary['elapsed_s']:.1f} s -> {summary['out']}"
    )
    emit(summary, opts["as_json"], render(summary, title))
    if summary["stopped"]:
        click.echo(
            f"engine: stopped with {summary['samples']:,} of {summary['target']:,} samples verified;"
            " run the same command to resume", err=True,
        )
    elif status := exit_status(summary):
        click.echo(
            f"engine: {summary['missing']:,} of {summary['target']:,} samples have no verdict"
            f" ({summary['generation_failures']:,} could not be generated, {summary['infra_errors']:,} met sandbox"
            " failures); run the same command to retry them",
            err=True,
        )
        sys.exit(status)


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--plot", "plot_path", type=click.Path(), default=None,
              help="Figure file, or a directory for report.png; report.html goes beside it"
                   " [default: the run's directory for one run, the current directory for several].")
@click.option("--no-plot", is_flag=True, help="Print only (no figure, no HTML).")
@click.option("--json", "as_json", is_flag=True, help="Print the first run's report (all runs under 'runs') as JSON.")
@click.option("--table", type=click.Path(dir_okay=False), default=None, help="Per-problem table, FILE.csv or FILE.parquet.")
@click.option("--target", default=0.95, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Coverage whose k each fit predicts.")
@click.option("--backtest", "backtest_m", type=click.IntRange(min=1), default=None,
              help="Fit on the first M samples of every problem and score the prediction of pass@n.")
@click.option("--reference", "references", multiple=True, type=LINE, metavar="'LABEL=VALUE'",
              help="A horizontal line, e.g. 'GPT-4o pass@1=0.902' (repeatable).")
@click.option("--bootstrap", "boots", default=1000, show_default=True, type=click.IntRange(min=10),
              help="Bootstrap replicates over problems.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the bootstraps.")
def report(run_dirs: tuple[str, ...], plot_path: str | None, no_plot: bool, as_json: bool, table: str | None,
           target: float, backtest_m: int | None, references: tuple[str, ...], boots: int, seed: int) -> None:
    """pass@k with intervals, four scaling-law fits with extrapolations, backtest, cost; one analysis per run."""
    from engine import report as rep
    from engine.analysis.scaling import Settings

    settings = Settings(boots=boots, parametric_boots=min(boots, 200), seed=seed, target=target)
    summary, text = rep.make_report(list(run_dirs), settings, backtest_m, plot_path, no_plot, table, list(references))
    emit(summary, as_json, text)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default=None,
              help="[default: from --out's name: .parquet or .jsonl; jsonl for '-']")
@click.option("--out", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="File to write; '-' writes to stdout.")
def export(run_dir: str, fmt: str | None, out: str) -> None:
    """Write one row per sample: task_id, sample_index, completion, passed, result, and the rest."""
    from engine.export import export as do_export
    from engine.export import format_for

    fmt = fmt or format_for(out)
    count = do_export(run_dir, fmt, out)
    click.echo(f"engine export: {count:,} samples ({fmt}) -> {'stdout' if out == '-' else out}", err=True)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def status(run_dir: str, as_json: bool) -> None:
    """Progress of a run, also while it runs: done, remaining, rate, ETA, current pass@k."""
    from engine.status import render as render_status
    from engine.status import run_status

    state = run_status(run_dir)
    emit(state, as_json, render_status(state))


def _register_commands_defined_elsewhere() -> None:
    from engine.verify import verify

    main.add_command(verify)


_register_commands_defined_elsewhere()
use_envvars(main, "ENGINE")
