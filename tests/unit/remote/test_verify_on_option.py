"""--verify-on's bad input: one line on stderr, exit status 2, before any sandbox starts."""

import subprocess
import sys

import click
import orjson
import pytest

from engine.cli.options import VERIFY_ON
from engine.tasks import load_problems

# `engine verify` in a Python that cannot import Ray (as without the extra).
WITHOUT_RAY = (
    "import sys; sys.modules['ray'] = None; from engine.cli import main; sys.argv[0] = 'engine'; main()"
)


@pytest.fixture
def samples(tmp_path):
    problem = load_problems(limit=1)[0]
    path = tmp_path / "samples.jsonl"
    path.write_bytes(
        orjson.dumps({"task_id": problem.task_id, "completion": problem.payload["canonical_solution"]})
        + b"\n"
    )
    return path


@pytest.mark.parametrize("verify_on", ["ray", "ray://127.0.0.1:10001"])
def test_without_ray_installed_says_how_to_install_it(samples, verify_on):
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_RAY, "verify", str(samples), "--verify-on", verify_on],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"engine: error: --verify-on {verify_on} needs Ray, which is not installed (ray): pip install 'engine[ray]'"
    ]


@pytest.mark.parametrize(
    "value",
    ["", "Ray", "auto", "ray:", "ray://", "ray://host", "ray://:10001", "ray://h:99999", "http://h:1"],
)
def test_a_malformed_value_is_refused(value):
    with pytest.raises(click.BadParameter, match="is not local, ray or ray://HOST:PORT"):
        VERIFY_ON.convert(value, None, None)


@pytest.mark.parametrize("value", ["local", "ray", "ray://127.0.0.1:10001", "ray://head.example:1"])
def test_a_well_formed_value_is_kept(value):
    assert VERIFY_ON.convert(value, None, None) == value
