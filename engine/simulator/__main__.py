"""`python -m engine.simulator ...` is `engine simulate ...`."""

from engine.simulator.command import simulate

simulate(prog_name="engine simulate")
