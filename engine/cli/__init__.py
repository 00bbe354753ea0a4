"""The `engine` command line: a thin click layer over the Python API (`import engine`).

    __init__   the group, logging, run_async, and the one error printer
    options    options several commands share (sandbox, limits, workers, headers, env vars)
    run verify report export status   one module per command (simulate: vllm_sim.command, loaded when named)

Every error the user can cause ends as one line on stderr and exit status 2: `fail` is the only
place that prints one, whether it comes from click or from the engine's error tree.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import click
import orjson

from engine.cli.options import use_envvars
from engine.errors import EngineError, SandboxError
from engine.progress import write_line

log = logging.getLogger("engine")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _TqdmHandler(logging.Handler):
    """Log lines that do not tear the progress bar apart."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write_line(self.format(record))
        except Exception:  # logging must never take the sweep down
            self.handleError(record)


def setup_logging(verbose: int) -> None:
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("engine").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("sandbox").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def run_async(coro: Coroutine):
    """Run on uvloop; the engine's errors reach the group's printer, Ctrl-C says how to resume."""
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except KeyboardInterrupt:
        click.echo(
            "engine: interrupted; what was collected is saved, run the same command to resume", err=True
        )
        sys.exit(EXIT_INTERRUPTED)


def fail(message: str, prefix: str = "engine", status: int = EXIT_BAD_INPUT) -> None:
    """The one error printer: one line on stderr, then exit (2 unless told otherwise)."""
    one_line = " ".join(message.split())  # a message may quote what it was given, newlines and all
    click.echo(f"{prefix}: error: {one_line}", err=True)
    sys.exit(status)


def emit(summary: Mapping[str, object], as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(summary) + b"\n")
        sys.stdout.flush()
    else:
        click.echo(text)


# Commands whose module is imported only when named: the simulator (aiohttp servers, a synthetic
# model) never loads for `engine verify` or `engine run`.
_LAZY = {"simulate": "vllm_sim.command:simulate"}


class _EngineGroup(click.Group):
    """Click's usage errors are three lines, ours one; every error goes through `fail`."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = False,  # always False here: every error goes through `fail`
        **extra: Any,
    ) -> Any:
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            ctx = exc.ctx if isinstance(exc, click.UsageError) else None  # only usage errors know it
            prefix = ctx.command_path if ctx else "engine"
            fail(
                exc.format_message(),
                prefix,
                EXIT_BAD_INPUT if isinstance(exc, click.UsageError) else exc.exit_code,
            )
        except click.exceptions.Abort:
            sys.exit(EXIT_INTERRUPTED)
        except (EngineError, SandboxError) as exc:  # InputError, FleetError, StorageError ...
            fail(str(exc))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in _LAZY and name not in self.commands:
            module, attribute = _LAZY[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
            use_envvars(self, "ENGINE", only=name)
        return super().get_command(ctx, name)


@click.group(
    cls=_EngineGroup, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "ENGINE"}
)
@click.version_option(package_name="engine")
def main() -> None:
    """Repeated sampling with execution-based verification.

    Every option can also be set as an environment variable ENGINE_<COMMAND>_<OPTION>,
    e.g. ENGINE_RUN_SAMPLES=1000.
    """


def _register() -> None:
    from engine.cli import export, report, run, status, verify

    for module in (run, report, export, status, verify):
        main.add_command(module.command)
    use_envvars(main, "ENGINE")


_register()
