"""The simulator is its own package (vllm_sim), behind `engine simulate`: the dependency runs one
way, vllm_sim -> engine, and the engine's CLI loads the simulator only to run it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("engine", "sandbox", "metrics")
# What the simulator truly shares with the engine: the problem record and dataset loading, and
# the error base of bad input (so `engine simulate` reports it as every command does).
SHARED = {"engine.records", "engine.tasks", "engine.errors"}


def imported_modules(package: str) -> dict[str, set[str]]:
    """Every module a package's files import (absolute imports; the code has no relative ones)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("package", PRODUCT)
def test_the_product_packages_never_import_the_simulator(package):
    """Invariant: no file of engine/, sandbox/ or metrics/ imports vllm_sim (engine's CLI names
    it only as a string, loaded when `engine simulate` runs)."""
    files = imported_modules(package)
    assert files, package
    offenders = {f: sorted(m for m in names if top(m) == "vllm_sim") for f, names in files.items()}
    assert {f: m for f, m in offenders.items() if m} == {}


def test_the_simulator_takes_from_the_engine_only_what_they_share():
    """Invariant: vllm_sim imports from the product only engine.records, engine.tasks and
    engine.errors; nothing of sandbox/ or metrics/."""
    files = imported_modules("vllm_sim")
    assert "vllm_sim/command.py" in files and len(files) >= 20
    used = {m for names in files.values() for m in names if top(m) in PRODUCT}
    assert used == SHARED


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(*sorted(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    ).stdout
    return set(out.split())


def test_importing_the_engine_cli_does_not_load_the_simulator_or_a_web_server():
    """`engine verify` (and every command but simulate) starts without vllm_sim or aiohttp.web."""
    loaded = loaded_after("import engine.cli")
    assert "engine.cli" in loaded
    assert {m for m in loaded if top(m) == "vllm_sim" or m.startswith("aiohttp.web")} == set()


def test_running_the_verify_command_does_not_load_the_simulator():
    """The command is resolved as `engine verify` would resolve it, not just imported."""
    loaded = loaded_after(
        "from engine.cli import main\nimport click\nmain.get_command(click.Context(main), 'verify')"
    )
    assert {m for m in loaded if top(m) == "vllm_sim"} == set()


def test_the_simulate_command_loads_when_asked_for_and_is_listed_before():
    loaded = loaded_after(
        "from engine.cli import main\nimport click\nctx = click.Context(main)\n"
        "assert 'simulate' in main.list_commands(ctx)\n"
        "assert main.get_command(ctx, 'simulate').name == 'simulate'"
    )
    assert "vllm_sim.command" in loaded


def test_engine_simulate_help_comes_from_the_simulator_with_its_environment_variables():
    result = subprocess.run(
        [sys.executable, "-m", "engine", "simulate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "simulated vLLM servers" in result.stdout
    assert "ENGINE_SIMULATE_HOSTS_FILE" in result.stdout
