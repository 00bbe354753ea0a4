"""`engine run`: sample every problem N times on a vLLM fleet and verify each sample."""

from __future__ import annotations

import sys

import click

from engine.cli import emit, run_async, setup_logging
from engine.cli.options import HTTP_HEADER, fleet_headers, sandbox_options, sandbox_settings, task_option
from engine.config import APIS, POLICIES, Output, RunConfig, SamplingSettings, Scheduling
from engine.summary import RunSummary

_ASKED, _PLAN, _OUT = SamplingSettings(), Scheduling(), Output()


@click.command("run")
@click.option(
    "--servers",
    "servers",
    required=True,
    type=click.Path(dir_okay=False),
    help="Hosts file: one vLLM base URL per line.",
)
@click.option(
    "--model", default=_ASKED.model, help="Model name; default: what the servers' /v1/models report."
)
@click.option(
    "--dataset",
    default=_ASKED.dataset,
    show_default=True,
    help="'humaneval', a JSONL/Parquet file, or a hub name (owner/name[:split]).",
)
@task_option
@click.option(
    "--samples",
    default=_ASKED.samples,
    show_default=True,
    type=click.IntRange(min=1),
    help="Samples per problem.",
)
@click.option("--limit", default=_ASKED.limit, type=click.IntRange(min=1), help="Only the first P problems.")
@click.option(
    "--out",
    default=_OUT.out,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Run directory; the same command again resumes it.",
)
@click.option(
    "--metrics-port",
    default=_OUT.metrics_port,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of /metrics (0: any free port).",
)
@click.option(
    "--metrics-host", default=_OUT.metrics_host, show_default=True, help="Address /metrics binds to."
)
@click.option("--no-metrics", is_flag=True, help="Do not serve /metrics.")
@click.option(
    "--api",
    type=click.Choice(APIS),
    default=_ASKED.api,
    show_default=True,
    help="chat: /v1/chat/completions for instruct models, code taken from the answer's ```python block.",
)
@click.option(
    "--system-prompt",
    default=None,
    help="System prompt of --api chat [default: the task kind's, asking for the whole function in a python block].",
)
@click.option("--temperature", default=_ASKED.temperature, show_default=True, type=click.FloatRange(min=0.0))
@click.option(
    "--top-p", default=_ASKED.top_p, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True)
)
@click.option("--max-tokens", default=_ASKED.max_tokens, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--seed",
    default=_ASKED.seed,
    show_default=True,
    type=int,
    help="Base seed; each sample's seed derives from it.",
)
@click.option(
    "--request-n",
    default=_PLAN.request_n,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Samples per request at most.",
)
@click.option(
    "--max-seqs-per-server",
    default=_PLAN.max_seqs_per_server,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sequences in flight per server.",
)
@click.option(
    "--queue-size",
    default=_PLAN.queue_size,
    type=click.IntRange(min=1),
    help="Samples held from request to verdict [default: 2 x servers x --max-seqs-per-server, at least 1024].",
)
@click.option(
    "--retries",
    default=_PLAN.retries,
    show_default=True,
    type=click.IntRange(min=0),
    help="Retries of a failed request's unfinished samples.",
)
@click.option(
    "--idle-timeout",
    default=_PLAN.idle_timeout_s,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds without a byte before a stream counts as failed.",
)
@click.option(
    "--request-timeout",
    default=_PLAN.request_timeout_s,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Seconds one request may take in all, first byte to last; then its unfinished samples are retried.",
)
@click.option(
    "--drain-timeout",
    default=_PLAN.drain_timeout_s,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="On SIGINT/SIGTERM, seconds live streams and queued samples may still finish.",
)
@click.option(
    "--new-run",
    is_flag=True,
    help="Start afresh in --out; an existing run there is kept as results.<time>.sqlite.",
)
@click.option(
    "--api-key",
    default=None,
    metavar="KEY",
    help="Sent as 'Authorization: Bearer KEY' on every request to the fleet (vllm serve --api-key).",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    type=HTTP_HEADER,
    metavar="NAME:VALUE",
    help="An HTTP header sent on every request to the fleet; repeatable (in the environment variable:"
    " one per line).",
)
@click.option(
    "--startup-timeout",
    default=_PLAN.startup_timeout_s,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Seconds to wait for servers that are still loading their model.",
)
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default=_PLAN.policy,
    show_default=True,
    help="uniform: --samples per problem; until-solved: stop a problem after --stop-after passes;"
    " hardest-first: each request to the problem with the fewest passes.",
)
@click.option(
    "--stop-after",
    default=_PLAN.stop_after,
    show_default=True,
    type=click.IntRange(min=1),
    help="until-solved: passes that end a problem.",
)
@sandbox_options
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as one JSON object.")
@click.option("-v", "--verbose", count=True, help="One log line per sample transition.")
def command(**opts) -> None:
    """Sample every problem N times on a vLLM fleet and verify each sample in a sandbox."""
    from engine.run import exit_status, run_sweep
    from engine.summary import render

    setup_logging(opts["verbose"])
    cfg = run_config(opts)
    summary = run_async(run_sweep(cfg))
    emit(summary, opts["as_json"], render(summary, _title(summary)))
    if summary["stopped"]:
        click.echo(
            f"engine: stopped with {summary['samples']:,} of {summary['target']:,} samples verified;"
            " run the same command to resume",
            err=True,
        )
    elif status := exit_status(summary):
        click.echo(
            f"engine: {summary['missing']:,} of {summary['target']:,} samples have no verdict"
            f" ({summary['generation_failures']:,} could not be generated, {summary['infra_errors']:,} met sandbox"
            " failures); run the same command to retry them",
            err=True,
        )
        sys.exit(status)


def run_config(opts: dict) -> RunConfig:
    """The one configuration object, from the command's options (checked together here)."""
    sandbox = sandbox_settings(opts)
    if opts["queue_size"] is not None and opts["request_n"] > opts["queue_size"]:
        raise click.BadParameter("must not exceed --queue-size", param_hint="--request-n")
    if opts["request_n"] > opts["max_seqs_per_server"]:
        raise click.BadParameter("must not exceed --max-seqs-per-server", param_hint="--request-n")
    return RunConfig(
        servers=opts["servers"],
        sampling=SamplingSettings(
            samples=opts["samples"],
            limit=opts["limit"],
            dataset=opts["dataset"],
            task=opts["task"],
            model=opts["model"],
            temperature=opts["temperature"],
            top_p=opts["top_p"],
            max_tokens=opts["max_tokens"],
            seed=opts["seed"],
            api=opts["api"],
            system_prompt=opts["system_prompt"],
        ),
        scheduling=Scheduling(
            request_n=opts["request_n"],
            max_seqs_per_server=opts["max_seqs_per_server"],
            queue_size=opts["queue_size"],
            retries=opts["retries"],
            idle_timeout_s=opts["idle_timeout"],
            request_timeout_s=opts["request_timeout"],
            policy=opts["policy"],
            stop_after=opts["stop_after"],
            startup_timeout_s=opts["startup_timeout"],
            drain_timeout_s=opts["drain_timeout"],
        ),
        sandbox=sandbox,
        output=Output(
            out=opts["out"],
            new_run=opts["new_run"],
            metrics_host=opts["metrics_host"],
            metrics_port=None if opts["no_metrics"] else opts["metrics_port"],
            progress=not opts["as_json"] or sys.stderr.isatty(),
        ),
        headers=fleet_headers(opts["api_key"], opts["headers"]),
    )


def _title(summary: RunSummary) -> str:
    return (
        f"engine run: {summary['samples']:,} samples of {summary['problems']} problems, model {summary['model']},"
        f" {summary['tokens']:,} completion tokens; this session {summary['new_samples']:,} samples in"
        f" {summary['elapsed_s']:.1f} s -> {summary['out']}"
    )
