"""`engine run`: set up the parts of a sweep, run it, and summarise it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time
from dataclasses import dataclass, field

import aiohttp
from prometheus_client import CollectorRegistry

from engine.dataset import load_problems
from engine.errors import RunConfigError
from engine.hosts import read_hosts
from engine.progress import Progress
from engine.records import Problem
from engine.chat import DEFAULT_SYSTEM_PROMPT
from engine.runner import HUMANEVAL_STOP, Sampling, Sweep, SweepOptions
from engine.servers import Fleet
from engine.store import Store
from engine.summary import summarize
from metrics.exporter import EngineMetrics
from metrics.http import serve_metrics
from metrics.page import PageData
from metrics.running import RunningPassAtK
from metrics.sweep_state import SweepState, SweepStateCollector, ensure_run_id, sampling_hash
from sandbox import Limits, SandboxPool
from sandbox.pool import default_workers
from sandbox.verifier import Timing, Verifier, seed_from_store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunConfig:
    servers: str
    out: str
    model: str | None = None
    dataset: str = "humaneval"
    samples: int = 100
    limit: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int = 0
    api: str = "completions"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    options: SweepOptions | None = None
    workers: int = field(default_factory=default_workers)
    limits: Limits = Limits()
    sandbox: str = "nsjail"  # nsjail | firejail | none
    dedup: bool = True
    timing: Timing = Timing()
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9400  # None: no endpoint
    startup_timeout_s: float = 300.0  # how long to wait for a fleet that is still loading
    drain_timeout_s: float = 60.0  # on the first SIGINT/SIGTERM: how long live work may finish
    final_scrape_timeout_s: float = 15.0  # after the sweep: how long to wait for Prometheus to see its end
    new_run: bool = False  # keep an existing run in --out aside and start afresh
    progress: bool = True


async def run_sweep(cfg: RunConfig, registry: CollectorRegistry | None = None) -> dict:
    """Run (or resume) a sweep to the end; returns the summary of the whole run."""
    urls = read_hosts(cfg.servers)
    all_problems = load_problems(cfg.dataset)
    problems = all_problems[: cfg.limit] if cfg.limit is not None else all_problems
    if cfg.new_run and (kept := Store.move_aside(cfg.out)) is not None:
        log.warning("--new-run: the previous run in %s is kept as %s", cfg.out, kept)
    store = Store.open(cfg.out)
    run_id = ensure_run_id(store)
    registry = registry if registry is not None else CollectorRegistry()
    running = RunningPassAtK()
    metrics = EngineMetrics(registry, running)
    options = cfg.options or SweepOptions(samples=cfg.samples)
    started = time.monotonic()
    try:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)  # the default limit=100 caps the fleet
        async with aiohttp.ClientSession(connector=connector) as session:
            fleet = Fleet(urls, session, options.max_seqs_per_server, metrics, hosts_path=cfg.servers)
            previous = store.get_meta("sampling")
            requested_model = cfg.model or (previous or {}).get("model")
            model = await fleet.discover(requested_model, cfg.startup_timeout_s)
            sampling = Sampling(
                model=model, dataset=_fingerprint(cfg.dataset, all_problems), temperature=cfg.temperature,
                top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed, api=cfg.api,
                stop=HUMANEVAL_STOP if cfg.api == "completions" else (),
                system_prompt=cfg.system_prompt if cfg.api == "chat" else "",
            )
            _check_same_run(previous, sampling, cfg.out)
            store.set_meta("sampling", sampling.to_dict())
            store.set_meta("target", {"problems": len(problems), "samples": options.samples})
            store.save_problems(all_problems)
            for task_id, (n, c) in store.pass_counts().items():
                running.add(task_id, False, n - c)
                running.add(task_id, True, c)
            state = _sweep_state(run_id, sampling, problems, options.samples, running, store)
            registry.register(SweepStateCollector(state))
            page = PageData(state, metrics)
            metrics_server = None
            if cfg.metrics_port is not None:
                metrics_server, port = await serve_metrics(registry, cfg.metrics_host, cfg.metrics_port, run_id, page)
                log.info("metrics on http://%s:%d/metrics, live page on / (run_id %s)", cfg.metrics_host, port, run_id)
            try:
                async with SandboxPool(workers=cfg.workers, limits=cfg.limits, backend=cfg.sandbox) as sandbox:
                    verifier = Verifier(sandbox, problems, dedup=cfg.dedup, timing=cfg.timing)
                    await verifier.preflight()
                    seed_from_store(verifier, store)
                    sweep = Sweep(
                        problems=problems, fleet=fleet, session=session, store=store, sandbox=sandbox,
                        verifier=verifier, workers=cfg.workers, metrics=metrics, running=running, sampling=sampling,
                        options=options,
                    )
                    verified = sum(n for n, _ in store.pass_counts().values())
                    progress = Progress(len(problems) * options.samples, verified, sweep.status, cfg.progress)
                    sweep.progress = progress
                    state.admission = sweep.admission
                    state.draining = lambda: sweep.stopped
                    log.info(
                        "sweep: %d problems x %d samples of %s on %d servers -> %s",
                        len(problems), options.samples, model, len(urls), cfg.out,
                    )
                    try:
                        with _stop_on_signals(sweep, cfg.drain_timeout_s):
                            await sweep.run()
                    finally:
                        progress.close()
                state.phase = "stopped" if sweep.stopped else "finished"
                if metrics_server is not None:  # let Prometheus record the end, not a vanished engine
                    await metrics_server.next_scrape(cfg.final_scrape_timeout_s)
            finally:
                state.close()
                page.close()
                if metrics_server is not None:
                    await metrics_server.cleanup()
        totals = store.totals()
        wanted = {p.task_id for p in problems}
        counts = {t: nc for t, nc in store.pass_counts().items() if t in wanted}
        verdicts = store.verdict_counts(wanted)
        return summarize(
            counts, verdicts, model=model, out=cfg.out, tokens=totals["tokens"],
            elapsed_s=round(time.monotonic() - started, 3), generation_failures=totals["generation_failures"],
            new_samples=sweep.stats.samples_verified, new_tokens=sweep.stats.tokens,
            target=len(problems) * options.samples, stopped=sweep.stopped,
        )
    finally:
        store.close()


def _sweep_state(run_id: str, sampling: Sampling, problems: list[Problem], samples: int,
                 running: RunningPassAtK, store: Store) -> SweepState:
    settings = sampling.to_dict()
    info = {"run_id": run_id, "model": sampling.model, "dataset": sampling.dataset,
            "task": settings.get("task", "humaneval"), "sampling_hash": sampling_hash(settings)}
    return SweepState(run_id=run_id, info=info, problems=[p.task_id for p in problems], samples=samples,
                      running=running, store_path=store.path)


@contextlib.contextmanager
def _stop_on_signals(sweep: Sweep, drain_timeout: float):
    """First SIGINT/SIGTERM: stop admitting requests and let live work drain for up to
    `drain_timeout`; a second one (or the deadline) stops at once. Either way the run resumes."""
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal() -> None:
        nonlocal received
        received += 1
        if received == 1:
            log.warning(
                "stopping: no new requests; live streams and the queue drain for up to %.0f s"
                " (signal again to stop at once)", drain_timeout,
            )
            sweep.stop()
            loop.call_later(drain_timeout, sweep.abort)
        else:
            log.warning("stopping at once")
            sweep.abort()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _fingerprint(dataset: str, problems: list[Problem]) -> str:
    digest = hashlib.sha256()
    for p in problems:
        digest.update(f"{p.task_id}\0{p.prompt}\0{p.test}\0{p.entry_point}\0".encode())
    return f"{dataset}@{digest.hexdigest()[:16]}"


def _check_same_run(previous: dict | None, sampling: Sampling, out: str) -> None:
    if previous is None:
        return
    current = sampling.to_dict()
    changed = [k for k in current if previous.get(k) != current[k]]
    if changed:
        what = ", ".join(f"{k} {previous.get(k)!r} -> {current[k]!r}" for k in changed)
        raise RunConfigError(
            f"{out} holds a run with other sampling settings ({what}); use another --out, or --new-run to start afresh"
        )
