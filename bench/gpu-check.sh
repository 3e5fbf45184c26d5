#!/usr/bin/env bash
# The device run: the FIRE recipe through stoker on one GPU (training-configs/fire-gpu-mini,
# hf backend) plus the GPU check of the hf backend and the self-play figures (bench/gpu_check.py),
# on a machine that has a GPU and Python with torch/transformers/peft but no Node, no Redis and
# no registry. What it needs travels in a folder made here first.
#
#   bash bench/gpu-check.sh --pack DIR        # HERE: node (xz), stoker's build + the node_modules
#                                             # it needs, redis-server from Debian's packages
#                                             # (bench/gpu-pack.sh); prints the size, checks 64 MiB
#   bash bench/gpu-check.sh --from DIR        # ON THE GPU MACHINE: unpack DIR, run the pipeline
#                                             # with device=cuda by the packed stoker and its
#                                             # embedded Redis, then gpu_check.py (training,
#                                             # self-play, figures); bench/gpu_device.py has the steps
#   bash bench/gpu-check.sh --cpu [--from DIR]  # the same flow on CPU, here: packs into .travel
#                                             # unless --from names a pack; device=cpu (the tiny
#                                             # engine); the hf check says "no GPU: n/a"
#   bash bench/gpu-check.sh [ARGS]            # GPU: with .travel/ as --from .travel, without it
#                                             # gpu_check.py ARGS alone (the hf check, as before)
#
# Without --cpu and without an NVIDIA GPU it prints "skipped: no NVIDIA GPU (...)" and exits 0.
# Exit 1 when something failed (unpack, versions, the run, the check); 0 otherwise, also when
# a figure misses its target (the targets are reported, not enforced). The last line is one
# JSON summary. $OUT (when set): at most 8 files (summary.json, console.log, report.md,
# stoker-run.json, stages.tsv, stage-logs.tar.gz, hf-check.tar.gz with profile.txt, gpu-util.csv).
#
# A later session with a GPU (the `run` tool; budget: one call of about 8 minutes):
#   here:   bash bench/gpu-check.sh --pack .travel        # about 45 MiB; .travel/ is git-ignored
#   run:    command   "bash bench/gpu-check.sh --from .travel"
#           carry     [".travel"]
#           timeout_s 600            (the pipeline gets 300 s, the hf check 180 s)
# then copy summary.json's figures into the README's Performance section.
#
# Environment: STOKER_PYTHON, the payloads' Python (GPU default: python3 on PATH; CPU default:
# the pipeline's /usr/bin/python3). PYTHONPATH gets worker/python/src for gpu_check.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=gpu
from=""
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --pack)
      exec bash bench/gpu-pack.sh "${2:?--pack needs a folder}"
      ;;
    --from)
      from="${2:?--from needs a folder}"
      shift 2
      ;;
    --cpu)
      mode=cpu
      shift
      ;;
    *)
      pass+=("$1")
      shift
      ;;
  esac
done

if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; fi
export PYTHONUNBUFFERED=1

if [ "$mode" = cpu ]; then
  driver_python=/usr/bin/python3
  [ -x "$driver_python" ] || driver_python=python3
  if [ -z "$from" ]; then
    from=.travel # the pack the GPU run takes too; node.xz is kept while node is the same
    bash bench/gpu-pack.sh "$from"
  fi
  args=(--from "$from" --device cpu)
  if [ -n "${STOKER_PYTHON:-}" ]; then args+=(--python "$STOKER_PYTHON"); fi
  "$driver_python" bench/gpu_device.py "${args[@]}" "${pass[@]}"
  exit $?
fi

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "skipped: no NVIDIA GPU (nvidia-smi not found)"
  exit 0
fi
if ! gpus="$(nvidia-smi -L 2>/dev/null)" || ! grep -q '^GPU [0-9]' <<<"$gpus"; then
  echo "skipped: no NVIDIA GPU (nvidia-smi lists none)"
  exit 0
fi
echo "$gpus"

python="${STOKER_PYTHON:-$(command -v python3)}"
export PYTHONPATH="$PWD/worker/python/src${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "$from" ] && [ -f .travel/manifest.json ]; then from=.travel; fi
if [ -n "$from" ]; then
  "$python" bench/gpu_device.py --from "$from" --device cuda --python "$python" "${pass[@]}"
  exit $?
fi
exec "$python" bench/gpu_check.py "${pass[@]}"
