"""Every option of every command can be set as ENGINE_<COMMAND>_<OPTION> (named after its long
option: --json is ENGINE_RUN_JSON), and `--help` shows the name. The test walks the click
commands' own parameters, so an option added later is covered without editing it."""

from __future__ import annotations

import click
import pytest

from engine.cli import main
from engine.cli.options import HeaderType, VerifyOnType

COMMANDS = main.list_commands(click.Context(main))
COMMAND = {name: main.get_command(click.Context(main), name) for name in COMMANDS}  # loads the lazy ones
OPTIONS = [
    (name, p)
    for name in COMMANDS
    for p in COMMAND[name].params
    if isinstance(p, click.Option) and not p.hidden
]


def env_name(command: str, option: click.Option) -> str:
    return f"ENGINE_{command}_{max(option.opts, key=len).lstrip('-')}".upper().replace("-", "_")


def sample(option: click.Option) -> tuple[str, object]:
    """A value for the environment variable, and what the command should receive."""
    kind = option.type
    if option.count:
        return "2", 2
    if option.is_flag:
        return "1", True
    if option.multiple and isinstance(kind, HeaderType):
        return "X-A: 1\nX-B: two words", (("X-A", "1"), ("X-B", "two words"))
    if option.multiple:  # one value per line: values may hold spaces
        return "GPT-4o pass@1=0.902\nB=0.5", ("GPT-4o pass@1=0.902", "B=0.5")
    if isinstance(kind, VerifyOnType):
        return "ray://127.0.0.1:10001", "ray://127.0.0.1:10001"
    if isinstance(kind, click.Choice):
        return kind.choices[-1], kind.choices[-1]
    if isinstance(kind, (click.IntRange, click.FloatRange)) or kind in (click.INT, click.FLOAT):
        low = getattr(kind, "min", None) or 0
        value = low + 1 if getattr(kind, "max", None) is None else (low + kind.max) / 2
        value = int(value) if isinstance(kind, click.IntRange) or kind is click.INT else value
        return str(value), value
    return "some-value", "some-value"


def required_args(command: click.Command, skip: click.Parameter) -> list[str]:
    """Command-line values for everything the command requires, except the option under test."""
    args = []
    for p in command.params:
        if p is skip or not p.required:
            continue
        value = "2" if p.type is click.INT else "x"
        args += [value] if isinstance(p, click.Argument) else [p.opts[0], value]
    return args


@pytest.mark.parametrize(("command", "option"), OPTIONS, ids=[f"{c}-{o.name}" for c, o in OPTIONS])
def test_every_option_reads_its_environment_variable(monkeypatch, command, option):
    text, expected = sample(option)
    monkeypatch.setenv(env_name(command, option), text)
    cmd = COMMAND[command]
    ctx = cmd.make_context(command, required_args(cmd, option))
    value = ctx.params[option.name]
    assert (str(value) if not isinstance(expected, (tuple, bool, int, float)) else value) == expected


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_every_environment_variable(command):
    cmd = COMMAND[command]
    text = cmd.get_help(click.Context(cmd, info_name=command))
    flat = " ".join(text.split())
    for option in (p for p in cmd.params if isinstance(p, click.Option) and not p.hidden):
        assert f"env var: {env_name(command, option)}" in flat, option.name


def test_the_environment_reaches_a_real_command(tmp_path, monkeypatch):
    """End to end through main(): ENGINE_EXPORT_FORMAT and ENGINE_EXPORT_OUT."""
    from click.testing import CliRunner

    from engine.store import Store

    Store.open(tmp_path).close()
    monkeypatch.setenv("ENGINE_EXPORT_FORMAT", "parquet")
    monkeypatch.setenv("ENGINE_EXPORT_OUT", str(tmp_path / "rows.bin"))
    result = CliRunner().invoke(main, ["export", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "rows.bin").read_bytes()[:4] == b"PAR1"
