"""`engine simulate`: K simulated vLLM servers in this process, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
from pathlib import Path

import click
import uvloop

from engine.errors import InputError
from engine.tasks import TASKS, load_problems
from vllm_sim.faults.spec import FaultSpec, parse_faults
from vllm_sim.fleet import SimulatedFleet
from vllm_sim.settings import SimulatorConfig

log = logging.getLogger(__name__)

_DEFAULTS = SimulatorConfig()
HOSTS_HEADER = "# simulated vLLM servers (engine simulate; synthetic model, no GPU)"


class HostsFileWriteError(InputError):
    """The hosts file cannot be written."""


@click.command()
@click.option("--servers", "servers", type=int, required=True, help="Number of simulated servers (K).")
@click.option(
    "--hosts-file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the servers' base URLs, one per line.",
)
@click.option(
    "--tokens-per-second",
    type=float,
    default=4000.0,
    show_default=True,
    help="Each server's aggregate generation rate.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="The synthetic model's seed.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--base-port",
    type=int,
    default=0,
    show_default=True,
    help="First port (then +1, +2, ...); 0 picks free ports.",
)
@click.option("--model-name", default=_DEFAULTS.model_name, show_default=True)
@click.option(
    "--dataset",
    default="humaneval",
    show_default=True,
    help="Problems the model knows: 'humaneval', a JSONL/Parquet path or a hub name (as engine run's).",
)
@click.option(
    "--task",
    type=click.Choice(sorted(TASKS)),
    default=None,
    help="Task kind of the dataset [default: detected from its fields].",
)
@click.option("--max-num-seqs", type=int, default=_DEFAULTS.max_num_seqs, show_default=True)
@click.option("--max-model-len", type=int, default=_DEFAULTS.max_model_len, show_default=True)
@click.option(
    "--api-key",
    default=None,
    metavar="KEY",
    help="As vllm serve --api-key: /v1/* routes need 'Authorization: Bearer KEY' (401 otherwise).",
)
@click.option(
    "--faults",
    "faults",
    default=None,
    metavar="SPEC",
    help="Inject faults, e.g. 'reset=0.05,stall=0.01:30s,kill=server1@10s+5s' "
    "(syntax: README, or vllm_sim/faults/spec.py).",
)
@click.option(
    "--faults-seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the per-request fault draws: the same seed, the same faults.",
)
@click.option(
    "--ignore-n",
    is_flag=True,
    help="Answer one choice per request whatever n asks, as llama.cpp's server and some gateways do.",
)
def simulate(
    servers: int,
    hosts_file: Path,
    tokens_per_second: float,
    seed: int,
    host: str,
    base_port: int,
    model_name: str,
    dataset: str,
    task: str | None,
    max_num_seqs: int,
    max_model_len: int,
    faults: str | None,
    faults_seed: int,
    ignore_n: bool,
    api_key: str | None,
) -> None:
    """Start simulated vLLM servers (a synthetic model, no GPU) and serve until stopped."""
    try:
        _check_numbers(servers, base_port, tokens_per_second, max_num_seqs, max_model_len)
        spec = parse_faults(faults)
        spec.check_fleet(servers)
        config = SimulatorConfig(
            model_name=model_name,
            max_num_seqs=max_num_seqs,
            max_model_len=max_model_len,
            ignore_n=ignore_n,
            api_key=api_key,
        )
        _check_writable(hosts_file)
        problems = load_problems(dataset, task=task)
        fleet = SimulatedFleet(
            servers,
            problems=problems,
            tokens_per_second=tokens_per_second,
            seed=seed,
            host=host,
            base_port=base_port,
            config=config,
            faults=spec,
            faults_seed=faults_seed,
        )
        if spec:
            _log_faults_to_stderr()
        _say_unanswerable(fleet.model.unanswerable(), len(problems))
        uvloop.run(_serve(fleet, hosts_file, spec, faults_seed))
    except InputError as exc:
        click.echo(f"engine simulate: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    except OSError as exc:  # most often: a --base-port already in use
        click.echo(f"engine simulate: cannot listen on {host}: {exc.strerror or exc}", err=True)
        raise click.exceptions.Exit(2) from None


async def _serve(fleet: SimulatedFleet, hosts_file: Path, spec: FaultSpec, faults_seed: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fleet:
        write_hosts_file(hosts_file, fleet.urls)
        click.echo(
            f"engine simulate: {len(fleet.urls)} SIMULATED vLLM servers (synthetic model, no GPU, "
            f"{fleet.config.tokens_per_second:g} tok/s each) listed in {hosts_file}"
            + (f"; injecting faults {spec} (seed {faults_seed})" if spec else ""),
            err=True,
        )
        await stop.wait()
        log.info("stopping %d simulated servers", len(fleet.urls))


def _say_unanswerable(task_ids: list[str], total: int) -> None:
    """Problems without a reference solution are answered with a placeholder that fails."""
    if task_ids:
        shown = ", ".join(task_ids[:5]) + (", ..." if len(task_ids) > 5 else "")
        click.echo(
            f"engine simulate: {len(task_ids)} of {total} problems have no reference solution ({shown});"
            " their samples are a placeholder that fails",
            err=True,
        )


def _log_faults_to_stderr() -> None:
    """Each injected fault is one INFO line on stderr (unless logging is set up already)."""
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%H:%M:%S"))
    faults_log = logging.getLogger("vllm_sim.faults")
    faults_log.addHandler(handler)
    faults_log.setLevel(logging.INFO)


def write_hosts_file(path: Path, urls: list[str]) -> None:
    """Atomically: readers never see a partial list."""
    text = "\n".join([HOSTS_HEADER, *urls]) + "\n"
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise HostsFileWriteError(f"cannot write hosts file {str(path)!r}: {exc.strerror or exc}") from exc


class SimulateOptionError(InputError):
    """An option value out of range."""


def _check_numbers(servers: int, base_port: int, rate: float, max_num_seqs: int, max_model_len: int) -> None:
    if servers < 1:
        raise SimulateOptionError(f"--servers must be at least 1, got {servers}")
    if base_port and not 1 <= base_port <= 65536 - servers:
        raise SimulateOptionError(f"--base-port {base_port} leaves no room for {servers} ports")
    if rate <= 0:
        raise SimulateOptionError(f"--tokens-per-second must be positive, got {rate:g}")
    if max_num_seqs < 1 or max_model_len < 2:
        raise SimulateOptionError("--max-num-seqs must be at least 1 and --max-model-len at least 2")


def _check_writable(path: Path) -> None:
    """Fail before starting servers rather than after."""
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not directory.is_dir() or not os.access(directory, os.W_OK):
        raise HostsFileWriteError(f"cannot write hosts file {str(path)!r}: no writable directory there")
