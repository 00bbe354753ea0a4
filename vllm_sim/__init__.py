"""A simulated vLLM fleet: vLLM 0.32's OpenAI-compatible API over a SYNTHETIC model, no GPU.

The embedded default for demos, tests and benchmarks (`engine simulate`, or `python -m vllm_sim`).
It depends on `engine` only for what the two truly share: the problem record and dataset loading
(`engine.records`, `engine.tasks`) and the error base of bad input (`engine.errors.InputError`);
`engine` never imports it, except to run `engine simulate`.

    settings  one server's settings (vLLM names and defaults)
    model/    the synthetic model: prompt + sample seed -> sample (pure)
      synthetic   SyntheticModel: which answer, at which solve rate
      kinds       what a task kind gives it (reference, trailers, chat form), via engine.tasks
      mutations   plausible wrong answers made from reference solutions
      filler      generic code-like text
      instruct    chat: the template's token count, answers worded as an instruct model's
    gpu/      generation: what vLLM's engine does between a request and its tokens
      tokens      BPE-like token splitting (no vocabulary)
      stops       vLLM's stop-string rules (pure)
      plans       per-step emission plans, pre-encoded and shared
      batch       continuous batching at a fixed token rate (the hot path)
    api/      one server's HTTP face
      validation  FastAPI/pydantic's part of request checking, its error wording
      protocol    vLLM's request parsing and checks, its error messages
      wire        the bytes of chunks, bodies and errors
      server_metrics  vLLM's Prometheus metrics, per server
      app         the aiohttp routes of one server
    faults/   the --faults option
      spec        parsing, validation, per-request draws (pure)
      injection   carrying faults out, per server and per stream
      controller  a fleet's scheduled events (kill, fleet_down, degrade)
    fleet     SimulatedServer and SimulatedFleet: lifecycle on one event loop
    command   the `engine simulate` click command
"""

from vllm_sim.faults.spec import FaultSpec, FaultSpecError, parse_faults
from vllm_sim.fleet import SimulatedFleet, SimulatedServer
from vllm_sim.model.synthetic import SyntheticModel
from vllm_sim.settings import SimulatorConfig

__all__ = [
    "FaultSpec",
    "FaultSpecError",
    "SimulatedFleet",
    "SimulatedServer",
    "SimulatorConfig",
    "SyntheticModel",
    "parse_faults",
]
