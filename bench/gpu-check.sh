#!/usr/bin/env bash
# GPU check of the FIRE hf backend (bench/gpu_check.py has what it checks and prints).
#
#   bash bench/gpu-check.sh                  # one JSON line at the end; exit 0 when all passed
#   OUT=/tmp/check bash bench/gpu-check.sh   # also $OUT/gpu-check.json and the payload logs
#
# Gated: it never runs without an NVIDIA GPU. No nvidia-smi, or nvidia-smi listing no GPU,
# prints "skipped: no NVIDIA GPU (...)" and exits 0, so CI and CPU machines can call it.
# Needs python3 with torch (CUDA), transformers, peft and accelerate ($STOKER_PYTHON
# overrides the interpreter). PYTHONPATH gets worker/python/src.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "skipped: no NVIDIA GPU (nvidia-smi not found)"
  exit 0
fi
if ! gpus="$(nvidia-smi -L 2>/dev/null)" || ! grep -q '^GPU [0-9]' <<<"$gpus"; then
  echo "skipped: no NVIDIA GPU (nvidia-smi lists none)"
  exit 0
fi
echo "$gpus"

export PYTHONPATH="$PWD/worker/python/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; fi
exec "${STOKER_PYTHON:-python3}" bench/gpu_check.py "$@"
