"""`python -m vllm_sim ...` is `engine simulate ...`."""

from vllm_sim.command import simulate

simulate(prog_name="engine simulate")
