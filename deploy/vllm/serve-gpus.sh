#!/usr/bin/env bash
# One vLLM OpenAI-compatible server per GPU of this node. Each server's base URL is appended to
# a hosts file as soon as it answers /health; the engine reads that file (`engine run --servers`).
#
# Run as: deploy/vllm/serve-gpus.sh MODEL [extra `vllm serve` arguments ...]
#   e.g.  HOSTS_FILE=/shared/sweep/hosts.txt deploy/vllm/serve-gpus.sh meta-llama/Llama-3.1-8B-Instruct
#
# Stays in the foreground until SIGTERM/SIGINT, which stops every server it started (and only
# those: each runs in its own process group). A server that fails to start is reported with the
# end of its log and left out of the hosts file. Start-up ends with one comment line in the
# hosts file, "# <host>: <k>/<n> vLLM servers healthy", which slurm-fleet.sbatch waits for.
#
# Environment (defaults):
#   GPUS              comma-separated GPU ids, one server each (CUDA_VISIBLE_DEVICES if set,
#                     else every GPU `nvidia-smi -L` lists)
#   BASE_PORT=8000    the server on the i-th GPU of GPUS listens on BASE_PORT+i
#   BIND=0.0.0.0      address the servers listen on (vLLM has no authentication: keep the fleet
#                     on a private network)
#   ADVERTISE=`hostname -f`  name or address by which the engine node reaches this node
#   HOSTS_FILE=hosts.txt     appended to, never truncated
#   MAX_NUM_SEQS=256  sequences per server batch (vLLM --max-num-seqs); match the engine's
#                     --max-seqs-per-server
#   SEED=0            vLLM --seed; requests carry their own seeds, which is what makes samples
#                     reproducible (see README, "Deploying on a real cluster")
#   GPU_MEMORY_UTILIZATION=0.90   MAX_MODEL_LEN= (model default)   SERVED_MODEL_NAME= (MODEL)
#   VLLM=vllm         the vllm executable
#   LOG_DIR=logs/vllm one log per server: vllm-<host>-<port>.log
#   WAIT_S=1800       how long a server may take to load before it counts as failed
#
# Deliberately absent: --disable-log-requests (request logging is off by default in current vLLM
# and vLLM 0.12 removed the flag, so passing it breaks newer servers) and --disable-log-stats (it
# also empties the vllm:* series on /metrics that the dashboard shows).
set -euo pipefail

MODEL=${1:?usage: serve-gpus.sh MODEL [extra vllm serve arguments]}
shift

BASE_PORT=${BASE_PORT:-8000}
BIND=${BIND:-0.0.0.0}
ADVERTISE=${ADVERTISE:-$(hostname -f 2>/dev/null || hostname)}
HOSTS_FILE=${HOSTS_FILE:-hosts.txt}
MAX_NUM_SEQS=${MAX_NUM_SEQS:-256}
SEED=${SEED:-0}
GPU_MEMORY_UTILIZATION=${GPU_MEMORY_UTILIZATION:-0.90}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-}
SERVED_MODEL_NAME=${SERVED_MODEL_NAME:-}
VLLM=${VLLM:-vllm}
LOG_DIR=${LOG_DIR:-logs/vllm}
WAIT_S=${WAIT_S:-1800}

die() { echo "serve-gpus: $*" >&2; exit 2; }

if [ -z "${GPUS:-}" ]; then
  if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    GPUS=$CUDA_VISIBLE_DEVICES
  elif command -v nvidia-smi >/dev/null; then
    GPUS=$(nvidia-smi -L | awk -F'[ :]' '/^GPU /{print $2}' | paste -sd, -)
  fi
fi
[ -n "${GPUS:-}" ] || die "no GPUs found: set GPUS=0,1,... or CUDA_VISIBLE_DEVICES"
command -v "$VLLM" >/dev/null || die "'$VLLM' not found: install vLLM (pip install vllm) or set VLLM="
command -v curl >/dev/null || die "curl not found (needed for the /health checks)"
mkdir -p "$LOG_DIR" "$(dirname "$HOSTS_FILE")"

IFS=, read -r -a gpu_list <<< "$GPUS"
pids=() ports=() logs=()
sleeper=  # the monitor loop's `sleep`, so that a signal ends the wait at once

stop_all() {
  trap - TERM INT EXIT
  local pid
  if [ -n "$sleeper" ]; then kill "$sleeper" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 30); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 143' TERM
trap 'stop_all; exit 130' INT
trap stop_all EXIT

for i in "${!gpu_list[@]}"; do
  gpu=${gpu_list[$i]}
  port=$((BASE_PORT + i))
  log="$LOG_DIR/vllm-$ADVERTISE-$port.log"
  args=(serve "$MODEL" --host "$BIND" --port "$port"
        --seed "$SEED" --max-num-seqs "$MAX_NUM_SEQS"
        --gpu-memory-utilization "$GPU_MEMORY_UTILIZATION")
  if [ -n "$MAX_MODEL_LEN" ]; then args+=(--max-model-len "$MAX_MODEL_LEN"); fi
  if [ -n "$SERVED_MODEL_NAME" ]; then args+=(--served-model-name "$SERVED_MODEL_NAME"); fi
  args+=("$@")
  echo "+ CUDA_VISIBLE_DEVICES=$gpu $VLLM ${args[*]}" > "$log"
  CUDA_VISIBLE_DEVICES=$gpu setsid "$VLLM" "${args[@]}" >> "$log" 2>&1 < /dev/null &
  pids+=("$!") ports+=("$port") logs+=("$log")
  echo "serve-gpus: GPU $gpu -> port $port (pid $!, log $log)"
done

# Wait for every server; append each base URL the moment it is healthy. The append holds an
# flock so that several launchers can share one hosts file.
append() { ( command -v flock >/dev/null && flock 9; echo "$1" >&9 ) 9>> "$HOSTS_FILE"; }
pending=("${!pids[@]}")
healthy=0
reported=()  # servers already reported as not running
deadline=$(( $(date +%s) + WAIT_S ))
while [ "${#pending[@]}" -gt 0 ]; do
  still=()
  for i in "${pending[@]}"; do
    if curl -sf -o /dev/null "http://127.0.0.1:${ports[$i]}/health"; then
      append "http://$ADVERTISE:${ports[$i]}"
      healthy=$((healthy + 1))
      echo "serve-gpus: http://$ADVERTISE:${ports[$i]} is healthy"
    elif ! kill -0 "${pids[$i]}" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
      echo "serve-gpus: the server on port ${ports[$i]} did not start; end of ${logs[$i]}:" >&2
      tail -20 "${logs[$i]}" >&2
      reported[i]=1
      kill -TERM -- "-${pids[$i]}" 2>/dev/null || true
    else
      still+=("$i")
    fi
  done
  pending=("${still[@]+"${still[@]}"}")
  if [ "${#pending[@]}" -gt 0 ]; then sleep 2; fi
done
append "# $ADVERTISE: $healthy/${#pids[@]} vLLM servers healthy"
[ "$healthy" -gt 0 ] || { echo "serve-gpus: no server started" >&2; exit 1; }

# Serve until stopped; report (once) any server that exits on its own.
while :; do
  for i in "${!pids[@]}"; do
    if [ -z "${reported[$i]:-}" ] && ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "serve-gpus: the server on port ${ports[$i]} exited; see ${logs[$i]}" >&2
      reported[i]=1
    fi
  done
  sleep 10 & sleeper=$!
  wait "$sleeper" || true
done
