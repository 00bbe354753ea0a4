"""The sandbox package's boundary and its swappable parts: it imports nothing from the engine, its
one error is mapped into the engine's tree at the engine's edge, and one registry of launchers
feeds both the CLI's --sandbox choices and SandboxPool's factory. No jail is started here."""

import ast
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine.errors
import sandbox.errors
from engine.cli import main
from sandbox import Outcome, SandboxPool, Verdict
from sandbox.forkserver.backend import SELF_TEST_PROGRAM, ForkServerBackend
from sandbox.forkserver.boot import boot_command
from sandbox.launchers import LAUNCHERS, Launcher
from sandbox.launchers.bare import BareLauncher
from sandbox.launchers.firejail import FirejailLauncher, FirejailLayout
from sandbox.launchers.nsjail import JailLayout, NsjailLauncher
from sandbox.limits import Limits
from sandbox.pool import make_backend

SANDBOX_DIR = Path(sandbox.__file__).resolve().parent
PROJECT = SANDBOX_DIR.parent


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


# --- the boundary ---------------------------------------------------------------------------


def test_sandbox_imports_nothing_from_engine() -> None:
    """Invariant: no module under sandbox/, at any depth and in any function, imports `engine`."""
    files = sorted(SANDBOX_DIR.rglob("*.py"))
    assert len(files) >= 20  # the walk saw the subfolders too
    offenders = {
        str(path.relative_to(PROJECT)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] == "engine"
        )
        for path in files
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_importing_all_of_sandbox_loads_no_engine_module() -> None:
    """The same at run time, in a fresh interpreter: every engine-side sandbox module imported."""
    modules = sorted(
        ".".join(path.relative_to(PROJECT).with_suffix("").parts).removesuffix(".__init__")
        for path in SANDBOX_DIR.rglob("*.py")
        if path.name != "server.py"  # the in-jail program: runs when executed, has no imports of ours
    )
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'engine'))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=PROJECT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("message", ["", "x", "sandbox nsjail unavailable: nsjail binary /nope is missing"])
def test_the_edge_maps_the_sandbox_error_into_the_engine_tree(message: str) -> None:
    """Invariant: what leaves a decorated coroutine is the engine's SandboxError (an EngineError,
    which the CLI prints as one line), same message, raised from the sandbox's own."""
    original = sandbox.errors.SandboxError(message)

    @engine.errors.map_exceptions(engine.errors.SANDBOX_ERRORS)
    async def opens_a_pool() -> None:
        raise original

    with pytest.raises(engine.errors.SandboxError) as caught:
        asyncio.run(opens_a_pool())
    assert isinstance(caught.value, engine.errors.EngineError)
    assert str(caught.value) == message and caught.value.__cause__ is original


@pytest.mark.parametrize(
    "error",
    [ValueError("v"), engine.errors.InputError("i"), engine.errors.SandboxError("e"), KeyboardInterrupt()],
)
def test_the_edge_lets_every_other_error_pass_unchanged(error: BaseException) -> None:
    async def body() -> None:
        async with engine.errors.map_exceptions(engine.errors.SANDBOX_ERRORS):
            raise error

    with pytest.raises(type(error)) as caught:
        asyncio.run(body())
    assert caught.value is error


def test_the_edge_returns_what_the_coroutine_returns() -> None:
    @engine.errors.map_exceptions(engine.errors.SANDBOX_ERRORS)
    async def fine(x: int) -> int:
        return x + 1

    assert [asyncio.run(fine(i)) for i in (0, 1)] == [1, 2]  # reusable: a fresh context per call


# --- one registry of launchers ----------------------------------------------------------------


def test_the_registry_feeds_the_cli_choices_of_every_command() -> None:
    """Invariant: every command with --sandbox offers exactly LAUNCHERS' names, the default first."""
    choices = {
        name: option.type.choices
        for name, command in main.commands.items()
        for option in command.params
        if option.name == "sandbox" and isinstance(option.type, click.Choice)
    }
    assert set(choices) >= {"run", "verify"}
    assert all(list(c) == list(LAUNCHERS) for c in choices.values()), choices
    assert next(iter(LAUNCHERS)) == "nsjail"


@pytest.mark.parametrize("name", list(LAUNCHERS))
def test_the_registry_feeds_the_factory(name: str) -> None:
    """Every registered name gives a fork-server backend over that launcher, named as registered,
    holding the whole Launcher protocol."""
    backend = make_backend(name)
    assert isinstance(backend, ForkServerBackend)
    assert backend.name == backend.launcher.name == name
    for member in ("prepare", "server_config", "command", "close"):
        assert callable(getattr(backend.launcher, member)), member


@given(st.text(max_size=12).filter(lambda name: name not in LAUNCHERS))
def test_an_unknown_name_is_refused_naming_every_choice(name: str) -> None:
    with pytest.raises(ValueError) as caught:
        make_backend(name)
    assert all(choice in str(caught.value) for choice in LAUNCHERS)


NSJAIL_LAYOUT = JailLayout(
    nsjail="/n",
    python="/p/bin/python3",
    prefix="/p",
    hidden_dirs=(),
    library_dirs=(),
    library_links=(),
    stage_dir="/s",
    unshare="/u",
    sh="/bin/sh",
    mount="/m",
)
FIREJAIL_LAYOUT = FirejailLayout(
    firejail="/f", setpriv="/sp", python="/usr/bin/python3", uid=1, gid=1, home="/h", hidden=()
)


def _prepared(name: str) -> tuple[Launcher, str]:
    """A launcher of each kind ready to give commands (a stated layout: no host tools needed), and
    the interpreter its jails run."""
    if name == "nsjail":
        nsjail = NsjailLauncher()
        nsjail.layout = NSJAIL_LAYOUT
        return nsjail, NSJAIL_LAYOUT.python
    if name == "firejail":
        firejail = FirejailLauncher()
        firejail.layout = FIREJAIL_LAYOUT
        return firejail, FIREJAIL_LAYOUT.python
    bare = LAUNCHERS[name]()
    bare.prepare(Limits())
    return bare, sys.executable


@pytest.mark.parametrize("label", ["", "engine-sandbox-x-1"])
@pytest.mark.parametrize("name", list(LAUNCHERS))
def test_every_launcher_ends_its_command_with_the_one_boot_line(name: str, label: str) -> None:
    """Invariant: whatever the jail, its command ends with boot.py's interpreter line for the
    launcher's own server config, and the label (when there is one) is the last argument."""
    launcher, python = _prepared(name)
    try:
        config = launcher.server_config()
        argv = launcher.command(config, label)
        tail = boot_command(python, json.dumps(config), label)
        assert argv[-len(tail) :] == tail
        assert (argv[-1] == label) if label else (argv[-1] == json.dumps(config))
    finally:
        launcher.close()
        launcher.close()  # twice: close() is idempotent


def test_the_bare_launcher_removes_its_scratch_directory() -> None:
    launcher = LAUNCHERS["none"]()
    launcher.prepare(Limits())
    scratch = launcher.server_config()["tmp_root"]
    assert os.path.isdir(scratch)
    launcher.close()
    assert not os.path.exists(scratch)


class FailsAfter:
    """A launcher written against the protocol alone, outside the registry: the bare launcher's
    jails while `jails` last, then a command that cannot start."""

    name = "fails-after"

    def __init__(self, jails: int) -> None:
        self.inner = BareLauncher()
        self.jails = jails

    def prepare(self, limits: Limits) -> None:
        self.inner.prepare(limits)

    def server_config(self) -> dict:
        return self.inner.server_config()

    def command(self, config: dict, label: str) -> list[str]:
        self.jails -= 1
        return self.inner.command(config, label) if self.jails >= 0 else ["/nonexistent/jail"]

    def close(self) -> None:
        self.inner.close()


def test_any_launcher_drives_the_backend_and_a_lost_worker_becomes_an_infra_error() -> None:
    """Invariant: the backend needs nothing of a launcher beyond the protocol. A worker that cannot
    be restarted (here: every jail after the first two) is replaced by a stand-in whose every
    program is an infra_error naming the cause, never a verdict about the program."""
    launcher = FailsAfter(jails=2)  # the worker and the reserved one, each retired after one program

    async def main() -> list[Outcome]:
        backend = ForkServerBackend(launcher, recycle_after=1, cgroups=False)
        async with SandboxPool(workers=1, limits=Limits(timeout_s=5.0), backend=backend) as pool:
            return [await pool.run(SELF_TEST_PROGRAM) for _ in range(3)]

    outcomes = asyncio.run(main())
    assert [o.verdict for o in outcomes] == [Verdict.infra_error] * 3
    assert all("cannot restart a worker" in o.detail and "/nonexistent/jail" in o.detail for o in outcomes)
    assert launcher.inner._tmp is None  # closed with the pool
