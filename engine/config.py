"""One configuration object per command, every default written once.

    RunConfig               `engine run`, and `engine.run_sweep` from Python
    ├── servers, headers    the fleet: hosts file, HTTP headers of every request
    ├── SamplingSettings    what is asked of the model, and how much (samples, limit)
    ├── Scheduling          how requests are cut, admitted, retried and timed out
    ├── SandboxSettings     how samples are verified (also all of `engine verify`)
    └── Output              where the run lives, what it serves and prints

The CLI's option defaults read from these classes, so `--help` shows the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from engine.tasks.source import EMBEDDED
from sandbox import Limits
from sandbox.launchers import LAUNCHERS
from sandbox.pool import default_workers
from sandbox.verifier import Timing

SANDBOX_BACKENDS = tuple(LAUNCHERS)  # the registry feeds the CLI choices and the factory alike
POLICIES = ("uniform", "until-solved", "hardest-first")
APIS = ("completions", "chat")
# What a server can make one request cost, whatever it sends (see README, "A hostile server"):
# a whole response, from connecting to its last byte. Here, not in engine.client, so that reading
# the configuration does not import the HTTP client (aiohttp) for `engine verify`.
DEFAULT_REQUEST_DEADLINE_S = 900.0


@dataclass(frozen=True, slots=True)
class SamplingSettings:
    samples: int = 100  # per problem
    limit: int | None = None  # only the first P problems
    dataset: str = EMBEDDED  # the embedded default, a JSONL/Parquet path or a hub name
    task: str | None = None  # the task kind (engine.tasks.TASKS); None: detected from the dataset's fields
    model: str | None = None  # None: what the servers report
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int = 0  # each sample's seed derives from it
    api: str = "completions"  # or "chat": /v1/chat/completions, code taken from the answer
    system_prompt: str | None = None  # chat only; None: the task kind's own


@dataclass(frozen=True, slots=True)
class Scheduling:
    request_n: int = 64  # samples per request at most (vLLM misbehaves with very large n)
    max_seqs_per_server: int = 256
    queue_size: int | None = None  # None: twice the sequences the whole fleet runs at once
    retries: int = 3
    idle_timeout_s: float = 120.0
    request_timeout_s: float = DEFAULT_REQUEST_DEADLINE_S  # one whole response, whatever the server sends
    flush_interval_s: float = 0.5
    policy: str = "uniform"  # or an adaptive one (engine.sweep.policies)
    stop_after: int = 1  # until-solved: passes after which a problem stops
    startup_timeout_s: float = 300.0  # how long to wait for a fleet that is still loading
    drain_timeout_s: float = 60.0  # on the first SIGINT/SIGTERM: how long live work may finish


def limits_for(timing: Timing, memory_mb: int = Limits().memory_mb, guards: bool = True) -> Limits:
    """The pool's limits: wall clock and CPU time both the fixed timeout (or the default of a
    calibrated one; the verifier sets each problem's own)."""
    fixed = timing.timeout_s or timing.default_s
    return Limits(timeout_s=fixed, cpu_time_s=fixed, memory_mb=memory_mb, guards=guards)


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    backend: str = "nsjail"  # one of SANDBOX_BACKENDS
    workers: int = field(default_factory=default_workers)
    limits: Limits = field(default_factory=lambda: limits_for(Timing()))
    dedup: bool = True
    timing: Timing = Timing()
    verify_on: str = "local"  # or "ray" (the running cluster), "ray://HOST:PORT" (Ray Client): engine.remote
    node_workers: int | None = None  # on Ray: sandboxes per node (None: 2 per CPU the node declares)


@dataclass(frozen=True, slots=True)
class Output:
    out: str = "runs/default"
    new_run: bool = False  # keep an existing run in `out` aside and start afresh
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9400  # None: no endpoint
    final_scrape_timeout_s: float = 15.0  # after the sweep: how long to wait for Prometheus to see its end
    progress: bool = True


@dataclass(frozen=True, slots=True)
class RunConfig:
    servers: str  # the hosts file
    sampling: SamplingSettings = SamplingSettings()
    scheduling: Scheduling = Scheduling()
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    output: Output = Output()
    headers: tuple[tuple[str, str], ...] = ()  # sent on every request to the fleet (--api-key, --header)


def default(cls: type, name: str):
    """The default of one field, for the CLI's options (written here once)."""
    for f in fields(cls):
        if f.name == name:
            return f.default_factory() if callable(f.default_factory) else f.default
    raise KeyError(f"{cls.__name__} has no field {name!r}")
