"""A results store with a corrupt page (or that is not SQLite at all) is one line on stderr and
exit status 2 for every command that opens a store, never a sqlite3 traceback."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from click.testing import CliRunner
from fleet_process import ENGINE, simulated_fleet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_run_lock import assert_one_line_error

from engine.cli import main
from engine.records import Sample
from engine.store import DB_NAME, Store, StoredVerdict

PAGE = 4096
READERS = [
    ["status"],
    ["status", "--json"],
    ["export", "--out", "-"],
    ["export", "--out", "{out}/x.parquet"],
    ["report", "--no-plot", "--json"],
]


def invoke(runner, args, out):
    return runner.invoke(main, [args[0], str(out), *(a.format(out=out) for a in args[1:])])


def make_run(out, samples=300):
    store = Store.open(out)
    store.set_meta("target", {"problems": 3, "samples": 100})
    for i in range(samples):
        task = f"HumanEval/{i % 3}"
        store.stage_sample(
            Sample(task, i, f"    return {i}  # {'x' * 300}\n", 9, "stop", "http://s:1", 1.0, None, 2.0)
        )
        store.stage_verdict(
            StoredVerdict(task, i, "passed" if i % 2 else "timeout", "", "", 0.02, "nsjail", {})
        )
    store.close()  # the last connection folds the WAL into the file
    return (out / DB_NAME).stat().st_size // PAGE


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    out = tmp_path_factory.mktemp("pristine")
    return out, make_run(out)


def damage(path, page: int, offset: int, garbage: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(page * PAGE + offset)
        f.write(garbage)


def assert_clean_outcome(result) -> None:
    """Invariant: either the command works (corruption it never reads), or one line and exit 2."""
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.stderr and isinstance(result.exception, (SystemExit, type(None)))
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("engine: error:"), result.stderr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_reader_is_one_line_on_any_damaged_page(pristine, tmp_path_factory, data):
    source, pages = pristine
    page = data.draw(st.sampled_from([0, 1, pages // 2, pages - 1]) | st.integers(0, pages - 1), label="page")
    offset = data.draw(st.integers(0, PAGE - 1), label="offset")
    garbage = data.draw(
        st.binary(min_size=1, max_size=PAGE - offset) | st.just(b"\xff" * (PAGE - offset)), label="garbage"
    )
    out = tmp_path_factory.mktemp("run")
    shutil.copy(source / DB_NAME, out / DB_NAME)
    damage(out / DB_NAME, page, offset, garbage)
    runner = CliRunner()
    for args in READERS:
        assert_clean_outcome(invoke(runner, args, out))


def test_a_page_of_zeros_in_the_samples_table_is_one_line_for_every_reader(pristine, tmp_path):
    source, pages = pristine
    shutil.copy(source / DB_NAME, tmp_path / DB_NAME)
    damage(tmp_path / DB_NAME, pages // 2, 0, b"\x00" * PAGE)
    runner = CliRunner()
    for args in READERS:
        result = invoke(runner, args, tmp_path)
        assert result.exit_code == 2 and "malformed" in result.stderr, (args, result.stderr)
        assert_clean_outcome(result)


def test_a_schema_that_sqlite_cannot_even_quote_is_one_line_for_every_reader(pristine, tmp_path):
    """A byte that is not UTF-8 in the schema's SQL: sqlite3's own error message then fails to
    decode (UnicodeDecodeError, not a DatabaseError); found by the test above, at its first page."""
    source, _ = pristine
    shutil.copy(source / DB_NAME, tmp_path / DB_NAME)
    first_page = (tmp_path / DB_NAME).read_bytes()[:PAGE]
    damage(tmp_path / DB_NAME, 0, first_page.index(b"NULL"), b"\x80")
    runner = CliRunner()
    for args in READERS:
        result = invoke(runner, args, tmp_path)
        assert result.exit_code == 2, (args, result.stderr, result.exception)
        assert_clean_outcome(result)


def test_run_and_verify_retry_on_a_damaged_store_are_one_line(tmp_path):
    out = tmp_path / "run"
    pages = make_run(out)
    damage(out / DB_NAME, pages // 2, 0, b"\x00" * PAGE)
    retry = subprocess.run(
        [*ENGINE, "verify", str(out), "--retry", "timeout", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(retry, str(out / DB_NAME), "malformed")
    with simulated_fleet(tmp_path, 1, 20_000) as hosts:
        run = subprocess.run(
            [
                *ENGINE,
                "run",
                "--servers",
                str(hosts),
                "--out",
                str(out),
                "--limit",
                "3",
                "--samples",
                "100",
                "--no-metrics",
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert_one_line_error(run, str(out / DB_NAME), "malformed")


def test_a_file_that_is_not_sqlite_is_one_line(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"not a database at all\n" * 300)
    runner = CliRunner()
    for args in READERS[:1] + READERS[2:3]:
        result = invoke(runner, args, tmp_path)
        assert result.exit_code == 2 and "not a usable results store" in result.stderr
