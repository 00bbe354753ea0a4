"""Generation as vLLM's engine does it: tokens, stop strings, emission plans, continuous batching."""
