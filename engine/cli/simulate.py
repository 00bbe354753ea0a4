"""`engine simulate`: the simulator's own click command, loaded only when it is named (see
engine.cli._LAZY), so no other command imports the simulator."""

from __future__ import annotations

import click


def command() -> click.Command:
    from engine.simulator.command import simulate

    return simulate
