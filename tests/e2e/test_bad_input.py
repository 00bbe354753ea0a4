"""Bad input ends with one clear line on stderr and exit status 2, never a traceback."""

import socket
import subprocess
import sys

import pytest

ENGINE = [sys.executable, "-m", "engine"]


def engine(*args, cwd):
    return subprocess.run([*ENGINE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hosts(tmp_path):
    path = tmp_path / "hosts.txt"
    path.write_text(f"http://127.0.0.1:{closed_port()}\n")
    return path


def test_missing_hosts_file(tmp_path):
    assert_one_line_error(
        engine("run", "--servers", "nope.txt", "--out", "o", cwd=tmp_path), "nope.txt", "does not exist"
    )


def test_malformed_hosts_line(tmp_path):
    (tmp_path / "hosts.txt").write_text("# fleet\nhttp://127.0.0.1:8000\nnot a url\n")
    assert_one_line_error(engine("run", "--servers", "hosts.txt", cwd=tmp_path), "hosts.txt:3")


def test_no_healthy_server(tmp_path, hosts):
    result = engine(
        "run", "--servers", str(hosts), "--out", "o", "--no-metrics", "--startup-timeout", "0", cwd=tmp_path
    )
    assert_one_line_error(result, "no server answered")


def test_unknown_dataset_path(tmp_path, hosts):
    result = engine("run", "--servers", str(hosts), "--dataset", "missing.jsonl", cwd=tmp_path)
    assert_one_line_error(result, "missing.jsonl", "no such file")


def test_rows_missing_fields(tmp_path, hosts):
    (tmp_path / "bad.jsonl").write_text(
        '{"task_id": "a", "prompt": "p", "test": "t", "entry_point": "f"}\n{"task_id": "b", "prompt": "p"}\n'
    )
    result = engine("run", "--servers", str(hosts), "--dataset", "bad.jsonl", cwd=tmp_path)
    assert_one_line_error(result, "row 2 lacks test, entry_point")


def test_bad_option_value_is_one_line(tmp_path, hosts):
    assert_one_line_error(
        engine("run", "--servers", str(hosts), "--samples", "zero", cwd=tmp_path), "--samples"
    )


def test_verify_missing_and_malformed_files(tmp_path):
    assert_one_line_error(engine("verify", "nope.jsonl", cwd=tmp_path), "does not exist")
    (tmp_path / "s.jsonl").write_text('{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": 3}\n')
    assert_one_line_error(engine("verify", "s.jsonl", cwd=tmp_path), "s.jsonl:2")
    (tmp_path / "u.jsonl").write_text('{"task_id": "Nope/0", "completion": "x"}\n')
    assert_one_line_error(engine("verify", "u.jsonl", cwd=tmp_path), "u.jsonl:1", "not in the dataset")


def test_report_of_a_directory_without_a_run(tmp_path):
    assert_one_line_error(engine("report", "empty", cwd=tmp_path), "holds no run")


def test_duplicate_hosts(tmp_path):
    (tmp_path / "hosts.txt").write_text("http://127.0.0.1:8000\nhttp://127.0.0.1:8000/\n")
    assert_one_line_error(
        engine("run", "--servers", "hosts.txt", cwd=tmp_path), "hosts.txt:2", "listed twice"
    )


def test_a_server_that_is_not_vllm(tmp_path):
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "hosts.txt").write_text(f"http://127.0.0.1:{server.server_address[1]}\n")
        result = engine("run", "--servers", "hosts.txt", "--no-metrics", cwd=tmp_path)
    finally:
        server.shutdown()
    assert_one_line_error(result, "no server answered as a vLLM server would", "HTTP 404")


def test_a_model_the_fleet_does_not_serve(tmp_path):
    from fleet_process import simulated_fleet

    with simulated_fleet(tmp_path, 1) as hosts:
        result = engine("run", "--servers", str(hosts), "--model", "gpt-7", "--no-metrics", cwd=tmp_path)
    assert_one_line_error(result, "'gpt-7' is not served", "simulated-llama-8b")
