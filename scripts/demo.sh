#!/usr/bin/env bash
# The embedded default: 10 simulated vLLM servers on 127.0.0.1, then a sweep over all 164
# HumanEval problems against them, then the report. Run through `make demo`.
set -euo pipefail
SAMPLES=${SAMPLES:-10}
OUT=${OUT:-runs/demo}
workdir=$(mktemp -d)
hosts="$workdir/hosts.txt"

engine simulate --servers 10 --hosts-file "$hosts" &
simulator=$!
trap 'kill "$simulator" 2>/dev/null; wait "$simulator" 2>/dev/null; rm -rf "$workdir"' EXIT
for _ in $(seq 300); do
  [ -s "$hosts" ] && break
  kill -0 "$simulator" 2>/dev/null || { echo "demo: the simulator did not start" >&2; exit 1; }
  sleep 0.1
done

engine run --servers "$hosts" --samples "$SAMPLES" --out "$OUT"
engine report "$OUT"
