"""`engine run`: set up the parts of a sweep, run it, and summarise it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

import aiohttp
from prometheus_client import CollectorRegistry

from engine.config import RunConfig, SamplingSettings
from engine.errors import SANDBOX_ERRORS, RunConfigError, map_exceptions
from engine.fleet.hosts import read_hosts
from engine.fleet.probes import Fleet
from engine.progress import Progress
from engine.records import Problem
from engine.remote import open_pool
from engine.runlock import RunLock, keep_heartbeat
from engine.store import FLAGGED, Store
from engine.store.seeding import seed_from_store
from engine.summary import RunSummary, summarize
from engine.sweep.policies import samples_owed
from engine.sweep.snapshot import ServerView, fleet_view
from engine.sweep.stream import Sampling
from engine.sweep.sweep import Sweep
from engine.tasks import DEFAULT_KIND, Dataset, load_dataset
from engine.tasks.hooks import flagged_references, prepare
from metrics.exporter import EngineMetrics
from metrics.http import MetricsServer, serve_metrics
from metrics.page import PageData
from metrics.running import RunningPassAtK
from metrics.sweep_state import SweepState, SweepStateCollector, ensure_run_id, sampling_hash
from sandbox.calibration import CalibrationCache
from sandbox.verifier import Verifier

log = logging.getLogger(__name__)


async def run_sweep(cfg: RunConfig, registry: CollectorRegistry | None = None) -> RunSummary:
    """Run (or resume) a sweep to the end; returns the summary of the whole run."""
    urls = read_hosts(cfg.servers)
    dataset = load_dataset(cfg.sampling.dataset, cfg.sampling.task)
    registry = registry if registry is not None else CollectorRegistry()
    running = RunningPassAtK()
    metrics = EngineMetrics(registry, running)
    # /metrics first: a port in use ends the command before it leaves anything in --out. It
    # serves no series until the store names the run (every series carries run_id).
    server = await _serve_metrics(registry, cfg.output.metrics_host, cfg.output.metrics_port)
    try:
        with RunLock.acquire(cfg.output.out):  # one writer per run, for the run's whole life
            if cfg.output.new_run and (kept := Store.move_aside(cfg.output.out)) is not None:
                log.warning("--new-run: the previous run in %s is kept as %s", cfg.output.out, kept)
            store = Store.open(cfg.output.out)
            if server is not None:
                server.label(ensure_run_id(store))
            live: dict = {}  # figures the heartbeat carries for `engine status` (servers up)
            beating = asyncio.create_task(keep_heartbeat(store, live))
            try:
                return await _sweep(cfg, store, urls, dataset, registry, metrics, running, live, server)
            finally:
                beating.cancel()
                await asyncio.gather(beating, return_exceptions=True)
                store.close()
    finally:
        if server is not None:
            await server.cleanup()


@map_exceptions(SANDBOX_ERRORS)
async def _sweep(
    cfg: RunConfig,
    store: Store,
    urls: list[str],
    dataset: Dataset,
    registry: CollectorRegistry,
    metrics: EngineMetrics,
    running: RunningPassAtK,
    live: dict,
    server: MetricsServer | None,
) -> RunSummary:
    asked, options = cfg.sampling, cfg.scheduling
    all_problems = dataset.problems
    samples, problem_count = _target(cfg, store, len(all_problems))
    problems = all_problems[:problem_count]
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)  # the default limit=100 caps the fleet
    async with aiohttp.ClientSession(connector=connector, headers=cfg.headers) as session:
        fleet = Fleet(urls, session, options.max_seqs_per_server, metrics, hosts_path=cfg.servers)
        metrics.add_servers(urls)
        live["servers"] = lambda: _servers_up(
            fleet_view(fleet.servers)
        )  # as the sweep's snapshot counts them
        previous = store.get_meta("sampling")
        requested_model = asked.model or (previous or {}).get("model")
        model = await fleet.discover(requested_model, options.startup_timeout_s)
        sampling = Sampling(
            model=model,
            dataset=dataset.fingerprint,
            temperature=asked.temperature,
            top_p=asked.top_p,
            max_tokens=asked.max_tokens,
            seed=asked.seed,
            api=asked.api,
            stop=dataset.task.stop if asked.api == "completions" else (),
            system_prompt=_system_prompt(asked, dataset) if asked.api == "chat" else "",
        )
        _check_same_run(previous, sampling, cfg.output.out)
        store.set_meta("sampling", sampling.to_dict())
        store.set_meta("target", {"problems": len(problems), "samples": samples})
        store.set_meta("policy", {"name": options.policy, "stop_after": options.stop_after})
        store.save_problems(all_problems)
        for task_id, (n, c) in store.pass_counts().items():
            running.add(task_id, False, n - c)
            running.add(task_id, True, c)
        state = _sweep_state(ensure_run_id(store), sampling, problems, samples, running, store)
        registry.register(SweepStateCollector(state))
        page = PageData(state, metrics)
        if server is not None:
            server.show(page)
        try:
            box = cfg.sandbox
            async with open_pool(box, registry) as sandbox:
                verifier = Verifier(
                    sandbox,
                    problems,
                    programs=dataset.task,
                    dedup=box.dedup,
                    timing=box.timing,
                    calibration_cache=CalibrationCache.default(),
                )
                prepared = await prepare(dataset.task, problems, sandbox)  # e.g. EvalPlus' expected outputs
                await verifier.preflight()
                store.set_meta(FLAGGED, flagged_references(prepared, verifier.flagged))
                seed_from_store(verifier, store)
                sweep = Sweep(
                    problems=problems,
                    fleet=fleet,
                    session=session,
                    store=store,
                    verifier=verifier,
                    workers=sandbox.capacity,
                    metrics=metrics,
                    running=running,
                    sampling=sampling,
                    samples=samples,
                    options=options,
                )
                state.sweep = sweep  # the metrics and the page read its snapshot from now on
                state.jails = sandbox.jails
                progress = Progress(sweep.snapshot, cfg.output.progress)
                log.info(
                    "sweep: %d problems x %d samples of %s on %d servers -> %s",
                    len(problems),
                    samples,
                    model,
                    len(urls),
                    cfg.output.out,
                )
                refreshing = asyncio.create_task(progress.refresh_forever())
                try:
                    with _stop_on_signals(sweep, options.drain_timeout_s):
                        await sweep.run()
                finally:
                    refreshing.cancel()
                    progress.close()
            state.phase = sweep.snapshot().state  # finished or stopped, shown at the next scrape
            if server is not None:  # let Prometheus record the end, not a vanished engine
                await server.next_scrape(cfg.output.final_scrape_timeout_s)
        finally:
            state.close()
            page.close()
    totals = store.totals()
    wanted = {p.task_id for p in problems}
    counts = {t: nc for t, nc in store.pass_counts().items() if t in wanted}
    verdicts = store.verdict_counts(wanted)
    return RunSummary(
        **summarize(counts, verdicts),
        flagged_references=store.get_meta(FLAGGED) or {},
        model=model,
        out=cfg.output.out,
        tokens=totals["tokens"],
        elapsed_s=round(time.monotonic() - started, 3),
        generation_failures=totals["generation_failures"],
        new_samples=sweep.stats.samples_verified,
        new_tokens=sweep.stats.tokens,
        target=len(problems) * samples,
        stopped=sweep.stopped,
        missing=sum(
            samples_owed(options.policy, samples, options.stop_after, *counts.get(t, (0, 0))) for t in wanted
        ),
    )


def _target(cfg: RunConfig, store: Store, available: int) -> tuple[int, int]:
    """(samples per problem, problem count): --samples and --limit may grow a run's stored target, never
    shrink it (the run goes on to its target, so `engine status` never shows more than 100 %)."""
    asked = cfg.sampling
    requested = min(asked.limit, available) if asked.limit is not None else available
    stored = store.get_meta("target") or {}
    samples = max(asked.samples, int(stored.get("samples", 0)))
    problems = min(available, max(requested, int(stored.get("problems", 0))))
    if samples > asked.samples or problems > requested:
        log.warning(
            "%s holds a run of %d problems x %d samples; a smaller --samples or --limit does not shrink it:"
            " going on to that target (--new-run starts afresh)",
            cfg.output.out,
            problems,
            samples,
        )
    return samples, problems


async def _serve_metrics(registry: CollectorRegistry, host: str, port: int | None) -> MetricsServer | None:
    """The endpoint (a port in use is an InputError: one line, exit 2), unlabelled until the run is known."""
    if port is None:
        return None
    server, bound = await serve_metrics(registry, host, port, run_id=None)
    log.info("metrics on http://%s:%d/metrics, live page on /", host, bound)
    return server


def _sweep_state(
    run_id: str,
    sampling: Sampling,
    problems: list[Problem],
    samples: int,
    running: RunningPassAtK,
    store: Store,
) -> SweepState:
    settings = sampling.to_dict()
    info = {
        "run_id": run_id,
        "model": sampling.model,
        "dataset": sampling.dataset,
        "task": problems[0].kind if problems else DEFAULT_KIND,
        "sampling_hash": sampling_hash(settings),
    }
    return SweepState(
        run_id=run_id,
        info=info,
        problems=[p.task_id for p in problems],
        samples=samples,
        running=running,
        store_path=store.path,
    )


def _servers_up(fleet: tuple[ServerView, ...]) -> tuple[int, int]:
    return sum(s.up for s in fleet), len(fleet)


def exit_status(summary: RunSummary) -> int:
    """`engine run`'s exit status (DESIGN.md), from what the store holds at the end: 0 when every
    sample of the target is verified, or when a signal stopped the run (it resumes); 1 when
    samples are missing, failed to generate or ended as infrastructure errors (the same command
    retries them)."""
    if summary["stopped"]:
        return 0
    holes = summary["missing"] + summary["generation_failures"] + summary.get("infra_errors", 0)
    return 1 if holes else 0


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
                " (signal again to stop at once)",
                drain_timeout,
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


def _system_prompt(asked: SamplingSettings, dataset: Dataset) -> str:
    return asked.system_prompt if asked.system_prompt is not None else dataset.task.system_prompt


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
