#!/usr/bin/env bash
# System packages the engine needs beyond Python wheels. Idempotent; needs root for apt.
set -euo pipefail
echo "setup-system: nothing to install yet"
