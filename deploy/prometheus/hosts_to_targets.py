#!/usr/bin/env python3
"""hosts.txt -> Prometheus file_sd targets, so Prometheus scrapes every vLLM server's /metrics
and the engine's.

Run as: python deploy/prometheus/hosts_to_targets.py HOSTS.txt [-o deploy/prometheus/targets/vllm.json]
            [--engine HOST:PORT]

With -o, the engine's target (`engine run`'s --metrics-host:--metrics-port, 127.0.0.1:9400 by
default) goes to engine.json beside it, so the Prometheus config follows --metrics-port.

The hosts file is read with the engine's own parser (one base URL per line, `#` comments and
blank lines; malformed or duplicate lines are refused with one line on stderr and exit status 2).
Each server becomes one target labelled `server="<base URL>"`, the same value the engine puts in
the `server` label of engine_* series, so dashboards can set both side by side. A base URL with a
path (http://gw/gpu3) is scraped at that path + /metrics. The output file is replaced atomically;
Prometheus notices the change by itself, so rerun this whenever hosts.txt changes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

try:
    from engine.fleet.hosts import read_hosts
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from engine.fleet.hosts import read_hosts
from engine.errors import HostsFileError

DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_ENGINE = "127.0.0.1:9400"  # `engine run`'s --metrics-host and --metrics-port
ENGINE_FILE = "engine.json"


def targets(urls: list[str]) -> list[dict]:
    """One file_sd group per server, in hosts-file order."""
    groups = []
    for url in urls:
        parts = urlsplit(url)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        port = parts.port or DEFAULT_PORTS[parts.scheme]  # Prometheus 3 adds no default port
        groups.append(
            {
                "targets": [f"{host}:{port}"],
                "labels": {
                    "server": url,
                    "__scheme__": parts.scheme,
                    "__metrics_path__": parts.path + "/metrics",
                },
            }
        )
    return groups


def engine_targets(address: str) -> list[dict]:
    """The engine's /metrics as one file_sd group; HOST:PORT, refused otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--engine {address!r} is not HOST:PORT")
    return [{"targets": [address], "labels": {}}]


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Turn an engine hosts file into Prometheus file_sd JSON.")
    parser.add_argument("hosts", help="hosts file: one vLLM base URL per line")
    parser.add_argument("-o", "--out", help="file_sd JSON to write (default: standard output)")
    parser.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        help=f"the engine's metrics address, written to {ENGINE_FILE} beside --out (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        text = json.dumps(targets(read_hosts(args.hosts)), indent=2) + "\n"
        engine = json.dumps(engine_targets(args.engine), indent=2) + "\n"
    except (HostsFileError, ValueError) as exc:
        print(f"hosts_to_targets: {exc}", file=sys.stderr)
        return 2
    if not args.out:
        sys.stdout.write(text)
        return 0
    try:
        write_atomically(Path(args.out), text)
        write_atomically(Path(args.out).with_name(ENGINE_FILE), engine)
    except OSError as exc:
        print(f"hosts_to_targets: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
