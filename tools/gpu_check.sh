#!/usr/bin/env bash
# The conformance suite on an NVIDIA GPU for the PyTorch and Flax ports (+ the
# transformers reference when importable); reports under $OUT. Installs nothing.
# See tools/gpu_check.py for what it writes and its exit status.
#
#   OUT=/tmp/out bash tools/gpu_check.sh
set -uo pipefail
: "${OUT:?set OUT to the folder the reports are written to}"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
unset JAX_PLATFORMS                         # let JAX find the GPU
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # PyTorch and JAX share the GPU in one process
export TF_CPP_MIN_LOG_LEVEL=2 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cd "$repo" && exec "${PYTHON:-python3}" tools/gpu_check.py
