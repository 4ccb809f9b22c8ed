#!/usr/bin/env bash
# The GPU check: one call on a machine with a CUDA GPU, under 10 minutes on one GPU.
#   experiments/gpu_check.sh [--data-dir DIR] [--ref-root DIR] [--out FILE]   # on the GPU
#   experiments/gpu_check.sh --dry-run --out /tmp/GPU_CHECK.md                # the same steps on the CPU, tiny
# Runs the tests marked cuda, one AMP epoch of every registered model on Los-loop, and the
# benchmark (ours and the reference implementations) on the GPU at METR-LA size; writes the
# tables to experiments/results/GPU_CHECK.md (see experiments/gpu_check.py). PYTHON=... picks
# the interpreter (default: python).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" experiments/gpu_check.py "$@"
