#!/usr/bin/env bash
# System packages only the tests need (called by `make test`, not by `make demo`): Debian's
# prometheus (brings promtool: config and rule checks, and the real Prometheus the monitoring
# integration test scrapes a simulated sweep with), shellcheck (the deploy scripts) and chromium
# (the live page, driven headless). Idempotent: installs only what is missing, runs apt-get update
# at most once, needs root for that. Prints one line.
set -euo pipefail
# command -> Debian package
declare -A PACKAGE=([prometheus]=prometheus [promtool]=prometheus [shellcheck]=shellcheck [chromium]=chromium)
missing=()
for command in "${!PACKAGE[@]}"; do
  if ! command -v "$command" >/dev/null 2>&1; then
    missing+=("${PACKAGE[$command]}")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-test-system: prometheus, promtool, shellcheck and chromium already there"
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-test-system: not root; missing ${missing[*]} (the tests that need them will fail)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup-test-system: could not install ${missing[*]} (above: apt-get's output)" >&2
  exit 1
fi
# Debian's package starts a Prometheus service on every interface; the tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
echo "setup-test-system: installed ${missing[*]}"
