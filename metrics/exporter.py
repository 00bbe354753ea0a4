"""The engine's Prometheus metrics (names fixed by DESIGN.md), on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from metrics.estimate import PassAtKEstimateCollector
from metrics.running import RunningPassAtK

VERDICTS = ("passed", "failed", "timeout", "oom", "error")
VERIFY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class EngineMetrics:
    """Every metric of one engine process. Tests pass a fresh CollectorRegistry."""

    def __init__(self, registry: CollectorRegistry, running: RunningPassAtK):
        self.registry = registry
        self.running = running
        self.generated_tokens = Counter(
            "engine_generated_tokens", "Completion tokens received", ["server"], registry=registry
        )
        self.samples_generated = Counter(
            "engine_samples_generated", "Samples whose generation finished", registry=registry
        )
        self.samples_verified = Counter(
            "engine_samples_verified", "Verdicts by kind", ["verdict"], registry=registry
        )
        for verdict in VERDICTS:
            self.samples_verified.labels(verdict)  # export zeros from the start
        self.generation_errors = Counter(
            "engine_generation_errors",
            "Requests that failed (each is retried for its unfinished samples)",
            ["server"],
            registry=registry,
        )
        self.queue_depth = Gauge("engine_queue_depth", "Samples waiting for a sandbox", registry=registry)
        self.inflight_requests = Gauge(
            "engine_inflight_requests", "Open streaming requests", ["server"], registry=registry
        )
        self.server_up = Gauge(
            "engine_server_up", "1 when the server answers its health check", ["server"], registry=registry
        )
        self.verify_seconds = Histogram(
            "engine_verify_seconds",
            "Wall time of one verification",
            buckets=VERIFY_BUCKETS,
            registry=registry,
        )
        self.infra_errors = Counter(
            "engine_infra_errors",
            "Samples whose sandbox kept failing (retried by the next run; not verdicts, not in pass@k)",
            registry=registry,
        )
        self.verify_dedup = Counter(
            "engine_verify_dedup",
            "Verdicts reused from an identical earlier sample instead of run",
            registry=registry,
        )
        registry.register(_PassAtKCollector(running))
        registry.register(PassAtKEstimateCollector(running))

    def add_servers(self, urls: list[str]) -> None:
        """Each server's series at zero from the start: a dashboard shows 0 errors, not "no data"."""
        for url in urls:
            for metric in (self.generated_tokens, self.generation_errors, self.inflight_requests):
                metric.labels(url)


class _PassAtKCollector:
    """engine_pass_at_k{k}, computed at scrape time from the running counts."""

    def __init__(self, running: RunningPassAtK):
        self._running = running

    def describe(self):
        return [GaugeMetricFamily("engine_pass_at_k", "Running unbiased pass@k", labels=["k"])]

    def collect(self):
        family = GaugeMetricFamily(
            "engine_pass_at_k", "Running unbiased pass@k over problems with at least k samples", labels=["k"]
        )
        for k, score in self._running.scores().items():
            family.add_metric([str(k)], score)
        yield family
