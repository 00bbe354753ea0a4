"""Infrastructure errors through a whole sweep: a sandbox that keeps failing for one problem's
samples gives rows with result `infra_error` (passed false) that are not verdicts: out of pass@k's
n, out of `engine_samples_verified_total`, counted in `engine_infra_errors_total` and in the
summary's `infra_errors`, and verified again by the next run of the same command."""

from __future__ import annotations

import asyncio

import uvloop
from prometheus_client import CollectorRegistry

from engine.config import Output, RunConfig, SamplingSettings, SandboxSettings, Scheduling
from engine.export import export_rows
from engine.run import run_sweep
from engine.store import Store
from engine.tasks import load_problems
from sandbox import Outcome, SandboxPool, Verdict
from vllm_sim import SimulatedFleet

PROBLEMS, SAMPLES = 4, 4
BROKEN = "HumanEval/1"  # its sandbox fails every time (preflight aside, so the run starts)


class BrokenForOneProblem(SandboxPool):
    """Every run of BROKEN's samples is a sandbox fault, however it is asked for: awaited
    (`run`: the verifier's retries) or with a callback (`submit`: a sample's first run)."""

    faults = 0

    def _fault(self, limits, label: str) -> Outcome | None:
        if not label.endswith(BROKEN) or label.startswith("preflight:"):
            return None
        BrokenForOneProblem.faults += 1
        detail = "sandbox fault: the worker died while the program ran"
        return Outcome(Verdict.infra_error, detail, 0.01, "test", limits or self.limits, "")

    async def run(self, program: str, *, limits=None, label: str = "", reserved: bool = False) -> Outcome:
        if (fault := self._fault(limits, label)) is not None:
            return fault
        return await super().run(program, limits=limits, label=label, reserved=reserved)

    def submit(self, program: str, *, limits=None, label: str = "", reserved: bool = False, data=None, done):
        if (fault := self._fault(limits, label)) is not None:
            asyncio.get_running_loop().call_soon(done, fault)
            return lambda: None
        return super().submit(program, limits=limits, label=label, reserved=reserved, data=data, done=done)


def sweep(tmp_path, urls: list[str]) -> tuple[dict, CollectorRegistry]:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(u + "\n" for u in urls))
    registry = CollectorRegistry()
    cfg = RunConfig(
        servers=str(hosts),
        sampling=SamplingSettings(samples=SAMPLES, limit=PROBLEMS),
        scheduling=Scheduling(request_n=4, queue_size=16),
        sandbox=SandboxSettings(workers=2, dedup=False),
        output=Output(out=str(tmp_path / "run"), metrics_port=None, progress=False),
    )
    return asyncio.get_event_loop().run_until_complete(run_sweep(cfg, registry=registry)), registry


def test_persistent_sandbox_faults_are_infra_errors_out_of_pass_at_k_and_retried_by_the_next_run(
    tmp_path, monkeypatch
):
    from sandbox.verifier import INFRA_ATTEMPTS

    monkeypatch.setattr("sandbox.verifier.INFRA_RETRY_DELAY_S", 0.0)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    fleet = SimulatedFleet(2, problems=load_problems(limit=PROBLEMS), tokens_per_second=20_000)
    loop.run_until_complete(fleet.__aenter__())
    try:
        monkeypatch.setattr("engine.remote.SandboxPool", BrokenForOneProblem)
        first, registry = sweep(tmp_path, fleet.urls)
        assert first["infra_errors"] == SAMPLES and first["samples"] == PROBLEMS * SAMPLES
        assert sum(first["verdicts"].values()) == (PROBLEMS - 1) * SAMPLES
        assert BrokenForOneProblem.faults == SAMPLES * INFRA_ATTEMPTS  # each retried, none reused
        assert registry.get_sample_value("engine_infra_errors_total") == SAMPLES
        verified = sum(
            registry.get_sample_value("engine_samples_verified_total", {"verdict": v}) or 0
            for v in ("passed", "failed", "timeout", "oom", "error")
        )
        assert verified == (PROBLEMS - 1) * SAMPLES
        store = Store.open(tmp_path / "run", create=False)
        assert BROKEN not in store.pass_counts() and len(list(store.unverified())) == SAMPLES
        rows = [r for r in export_rows(store) if r["task_id"] == BROKEN]
        assert [(r["result"], r["passed"]) for r in rows] == [("infra_error", False)] * SAMPLES
        store.close()

        monkeypatch.setattr("engine.remote.SandboxPool", SandboxPool)  # the sandbox is healthy again
        second, registry = sweep(tmp_path, fleet.urls)
        assert second["infra_errors"] == 0 and sum(second["verdicts"].values()) == PROBLEMS * SAMPLES
        assert second["new_samples"] == SAMPLES  # only the infra errors were verified again
        assert registry.get_sample_value("engine_infra_errors_total") == 0
    finally:
        loop.run_until_complete(fleet.__aexit__(None, None, None))
        loop.close()
        asyncio.set_event_loop(None)
