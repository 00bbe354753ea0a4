"""The live page at / on the metrics port, driven in Debian's headless Chromium: what it shows
is checked against the store, during a simulated sweep (a server down) and exactly on a store
whose figures do not move. A screenshot of the page mid-sweep is kept in runs/live-page.png."""

from __future__ import annotations

import asyncio
import html.parser
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
import uvloop
from fleet_process import ENGINE, simulated_fleet
from prometheus_client import CollectorRegistry
from test_prometheus_live import free_port

from engine.fleet.hosts import parse_hosts
from engine.records import Sample
from engine.store import Store, StoredVerdict
from metrics.exporter import EngineMetrics
from metrics.http import serve_metrics
from metrics.page import PageData
from metrics.passk import ks_for, pass_at_k_table
from metrics.running import RunningPassAtK
from metrics.sweep_state import SweepState

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "runs" / "live-page.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--virtual-time-budget=4000",
]


def chromium(url: str, profile: Path, *action: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed: `make test` installs it (scripts/setup-test-system.sh)"
    return subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, url],
        capture_output=True,
        text=True,
        timeout=120,
    )


class Shown(html.parser.HTMLParser):
    """Text of every element with an id, and the rows of every table, from a dumped DOM."""

    def __init__(self, dom: str):
        super().__init__()
        self.text: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.attrs_of: dict[str, dict] = {}
        self._open: list[str | None] = []
        self._table: str | None = None
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        ident = attrs.get("id")
        if tag in ("br", "img", "meta", "circle", "line", "polyline"):
            return
        self._open.append(ident)
        if ident:
            self.text[ident] = ""
            self.attrs_of[ident] = attrs
        if tag == "table":
            self._table = ident
            self.tables[ident] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self.tables[self._table][-1].append("")

    def handle_endtag(self, tag):
        if tag in ("br", "img", "meta", "circle", "line", "polyline"):
            return
        if self._open:
            self._open.pop()
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        for ident in self._open:
            if ident:
                self.text[ident] += data
        if self._table and self.tables[self._table] and self.tables[self._table][-1]:
            self.tables[self._table][-1][-1] += data

    def rows(self, table: str) -> list[list[str]]:
        return self.tables[table][1:]  # without the header


def number(text: str) -> int:
    return int(text.replace(",", ""))


def store_now(out: Path) -> dict:
    db = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True)
    try:
        verified = db.execute("SELECT COUNT(verdict) FROM samples").fetchone()[0]
        solved = db.execute(
            "SELECT COUNT(DISTINCT task_id) FROM samples WHERE verdict = 'passed'"
        ).fetchone()[0]
    finally:
        db.close()
    return {"verified": verified, "solved": solved}


LIMIT, SAMPLES = 10, 100  # far more than the test waits for: the engine is stopped, not finished


@pytest.mark.timeout(240)
def test_the_page_during_a_sweep_shows_the_store_and_the_server_that_is_down(tmp_path):
    (tmp_path / "fleet").mkdir()
    port = free_port()
    out = tmp_path / "run"
    with simulated_fleet(tmp_path / "fleet", 3, 600, "--faults", "kill=server1@1s+120s") as hosts:
        engine = subprocess.Popen(
            [
                *ENGINE,
                "run",
                "--servers",
                str(hosts),
                "--out",
                str(out),
                "--limit",
                str(LIMIT),
                "--samples",
                str(SAMPLES),
                "--metrics-port",
                str(port),
                "--request-n",
                "5",
                "--workers",
                "1",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}/"
            _wait_until_verdicts(out, engine)
            time.sleep(4)  # the engine's health check has seen server1 down
            before = store_now(out)
            result = chromium(url, tmp_path / "profile-1", "--dump-dom")
            after = store_now(out)
            assert result.returncode == 0, result.stderr
            shown = Shown(result.stdout)
            SCREENSHOT.parent.mkdir(exist_ok=True)
            SCREENSHOT.unlink(missing_ok=True)
            shot = chromium(
                url, tmp_path / "profile-2", "--window-size=1280,1500", f"--screenshot={SCREENSHOT}"
            )
            assert shot.returncode == 0 and SCREENSHOT.exists() and SCREENSHOT.stat().st_size > 10_000, (
                shot.stderr
            )
        finally:
            engine.send_signal(signal.SIGINT)  # stop admitting; a second signal stops at once
            time.sleep(0.5)
            engine.send_signal(signal.SIGINT)
            engine.communicate(timeout=120)
        servers = parse_hosts(hosts.read_text())

    assert shown.text["state"] in ("running", "draining")
    assert number(shown.text["target"]) == LIMIT * SAMPLES
    assert (
        before["verified"] <= number(shown.text["verified"]) <= after["verified"] + 100
    )  # + unflushed verdicts
    assert before["solved"] <= number(shown.text["solved"]) <= LIMIT
    assert shown.text["eta"] not in ("", "…", "–")  # the rate of `engine status`: the last minute's verdicts
    rows = {r[0]: r[1] for r in shown.rows("servers")}
    assert set(rows) == set(servers)
    assert rows[servers[1]] == "down" and [rows[s] for s in (servers[0], servers[2])] == ["up", "up"]
    assert shown.text["up_count"] == "2/3 up"
    assert [r[0] for r in shown.rows("passk")][0] == "1"
    # opened seconds into the sweep, the page draws tokens/s and samples/s from the engine's history
    rates_chart = result.stdout.split('id="rates"')[1].split("</svg>")[0]
    assert rates_chart.count("<polyline") == 2, rates_chart
    print(f"\nscreenshot: {SCREENSHOT}")


def test_the_page_shows_exactly_what_the_store_holds(tmp_path):
    """A store that does not move: every figure on the page equals the store's, pass@k to 4 digits."""
    store = Store.open(tmp_path)
    table = {
        "T/0": ["passed", "failed", "passed"],
        "T/1": ["failed", "timeout", "failed"],
        "T/2": ["passed"],
        "T/3": [],
        "T/4": ["error", "infra_error"],
    }
    for task, verdicts in table.items():
        for i, verdict in enumerate(verdicts):
            now = time.time()
            store.stage_sample(Sample(task, i, "x", 5, "stop", "http://s", now, now, now))
            store.stage_verdict(StoredVerdict(task, i, verdict, "", "", 0.01 * (i + 1), "nsjail", {}))
    store.stage_failure("T/3", 0, "HTTP 500 after 3 attempts", 3)
    store.flush()
    counts = store.pass_counts()
    running = RunningPassAtK()
    for task, (n, c) in counts.items():
        if task != "T/4":
            running.add(task, True, c)
            running.add(task, False, n - c)
    running.add("T/4", False, 1)  # the infra_error is no verdict about the program
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry, running)
    for url, up in (("http://gpu0:8000", 1), ("http://gpu1:8000", 0)):
        metrics.server_up.labels(url).set(up)
    info = {"run_id": "r", "model": "m", "dataset": "d", "task": "humaneval", "sampling_hash": "h"}
    state = SweepState(
        run_id="r", info=info, problems=list(table), samples=3, running=running, store_path=store.path
    )
    state.phase = "finished"
    page = PageData(state, metrics)

    async def main():
        server, port = await serve_metrics(registry, "127.0.0.1", 0, "r", page)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/api/state") as response:
                    data = orjson.loads(await response.read())
                async with session.get(
                    f"http://127.0.0.1:{port}/api/state?since={time.time() + 1}"
                ) as response:
                    assert orjson.loads(await response.read())["history"] == []  # nothing newer
                async with session.get(f"http://127.0.0.1:{port}/api/state?since=yesterday") as response:
                    assert response.status == 400
            dump = await asyncio.create_subprocess_exec(
                shutil.which("chromium"),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp_path / 'profile'}",
                "--dump-dom",
                f"http://127.0.0.1:{port}/",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, _ = await asyncio.wait_for(dump.communicate(), 120)
            return data, stdout.decode()
        finally:
            await server.cleanup()

    data, dom = uvloop.run(main())
    page.close()
    state.close()
    shown = Shown(dom)
    expected_pass = pass_at_k_table(running.counts(), ks_for(3))  # every k up to the most samples
    assert {int(k): v for k, v in data["pass_at_k"].items()} == pytest.approx(expected_pass)
    assert {r[0]: r[1] for r in shown.rows("passk")} == {str(k): f"{v:.4f}" for k, v in expected_pass.items()}
    assert shown.text["state"] == "finished"
    assert [point[1:] for point in data["history"]] == [[0, 8]]  # (time, tokens, verified) since start
    assert data["rate_per_s"] == pytest.approx(9 / 60)  # every row with a result was written just now
    assert data["eta_s"] == pytest.approx(7 / (9 / 60)) and shown.text["eta"] == "47 s"
    assert number(shown.text["verified"]) == 8 and number(shown.text["target"]) == 15
    assert number(shown.text["solved"]) == 2 and number(shown.text["problems"]) == 5
    assert number(shown.text["infra_errors"]) == 1 and number(shown.text["generation_failures"]) == 1
    assert shown.text["unsolved"] == "T/1, T/3, T/4" and shown.text["unsolved_count"] == "3"
    verdicts = {r[0]: number(r[1]) for r in shown.rows("verdicts")}
    assert verdicts == store.verdict_counts()
    assert [r[0] for r in shown.rows("most_failing")][:2] == ["T/1", "T/4"]  # 0 of 3, then 0 of 1
    assert {r[0]: r[1] for r in shown.rows("servers")} == {
        "http://gpu0:8000": "up",
        "http://gpu1:8000": "down",
    }
    assert shown.text["up_count"] == "1/2 up"
    assert [r[0] for r in shown.rows("errors")] == ["T/3"] and "HTTP 500" in shown.rows("errors")[0][2]
    assert {r[0] for r in shown.rows("slowest")} == {"T/0", "T/1", "T/2", "T/4"}
    store.close()


def _wait_until_verdicts(out: Path, engine: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert engine.poll() is None, engine.stderr.read()
        try:
            if store_now(out)["verified"] >= 20:
                return
        except sqlite3.Error:  # not created yet
            pass
        time.sleep(0.2)
    pytest.fail("no verdicts within a minute")
