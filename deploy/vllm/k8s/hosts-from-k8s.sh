#!/usr/bin/env bash
# The ready pods of the vLLM StatefulSet (vllm.yaml) as a hosts file for `engine run --servers`.
#
# Run as: deploy/vllm/k8s/hosts-from-k8s.sh [-n NAMESPACE] [--ips] [OUT]
#   OUT       file to write (atomically); default: standard output
#   --ips     pod IPs instead of the pods' stable DNS names. DNS names (the default) survive pod
#             restarts and resolve inside the cluster; use IPs only when the engine node is
#             outside the cluster but can route to pod IPs, and regenerate after restarts.
# Environment: SELECTOR=app.kubernetes.io/name=vllm SERVICE=vllm PORT=8000 KUBECTL=kubectl
# Exit status 2 when no pod is ready.
set -euo pipefail

KUBECTL=${KUBECTL:-kubectl}
NAMESPACE=$("$KUBECTL" config view --minify -o jsonpath='{..namespace}' 2>/dev/null || true)
NAMESPACE=${NAMESPACE:-default}
SELECTOR=${SELECTOR:-app.kubernetes.io/name=vllm}
SERVICE=${SERVICE:-vllm}
PORT=${PORT:-8000}
use_ips=0
out=
while [ $# -gt 0 ]; do
  case $1 in
    -n|--namespace) NAMESPACE=${2:?-n needs a namespace}; shift 2 ;;
    --ips) use_ips=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "hosts-from-k8s: unknown option $1" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done

# name <TAB> pod IP <TAB> Ready condition, one pod per line.
pods=$("$KUBECTL" get pods -n "$NAMESPACE" -l "$SELECTOR" -o jsonpath='{range .items[*]}{.metadata.name}{"\t"}{.status.podIP}{"\t"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')

hosts=$(
  printf '%s\n' "$pods" | sort -V | while IFS=$'\t' read -r name ip ready; do
    [ "$ready" = True ] || continue
    if [ "$use_ips" = 1 ]; then
      echo "http://$ip:$PORT"
    else
      echo "http://$name.$SERVICE.$NAMESPACE.svc.cluster.local:$PORT"
    fi
  done
)
total=$(printf '%s\n' "$pods" | grep -c . || true)
ready=$(printf '%s\n' "$hosts" | grep -c . || true)
if [ "$ready" = 0 ]; then
  echo "hosts-from-k8s: no ready pods match $SELECTOR in namespace $NAMESPACE ($total found)" >&2
  exit 2
fi

text="# $ready of $total vLLM pods ready ($SELECTOR, namespace $NAMESPACE), $(date -Is)
$hosts"
if [ -z "$out" ]; then
  printf '%s\n' "$text"
else
  printf '%s\n' "$text" > "$out.tmp.$$"
  mv "$out.tmp.$$" "$out"
  echo "hosts-from-k8s: $ready servers in $out" >&2
fi
