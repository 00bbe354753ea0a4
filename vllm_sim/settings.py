"""One simulated server's settings, with vLLM's names and defaults where vLLM has them."""

from __future__ import annotations

from dataclasses import dataclass

VLLM_VERSION = "0.32.0"


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    model_name: str = "simulated-llama-8b"
    tokens_per_second: float = 4000.0  # the server's aggregate generation rate (all sequences)
    seed: int = 0  # the synthetic model's seed: same seed, same samples, on every server
    max_num_seqs: int = 256  # sequences in the running batch; the rest wait
    max_model_len: int = 4096  # prompt + completion tokens
    min_step_s: float = 0.010  # an engine step never takes less (one token per sequence per step)
    kv_cache_tokens: int = 262_144  # for vllm:kv_cache_usage_perc
    root: str = "simulated://synthetic-humaneval"
    ignore_n: bool = False  # one choice per prompt whatever `n` asks, as llama.cpp's server and some gateways
    api_key: str | None = None  # vllm serve --api-key: /v1/* needs "Authorization: Bearer <key>"

    def __post_init__(self) -> None:
        if self.tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be positive")
        if self.max_num_seqs < 1 or self.max_model_len < 2:
            raise ValueError("max_num_seqs must be >= 1 and max_model_len >= 2")
