#!/usr/bin/env bash
# The GPU check, as one script for the lent GPU machine (one GPU, PyTorch + Lightning + transformers, no package
# registry). Prepare the wheels it lacks on a machine with a registry first: `make gpu-wheels` (dev/gpu/wheels,
# well under the 64 MiB that can be carried), then run there:  bash dev/gpu_check.sh [--steps 5]
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-dev/gpu/wheels}
if ! python -c "import deepspeed" 2>/dev/null; then
  python -m pip install -q --no-index --find-links "$WHEELS" hjson ninja py-cpuinfo msgpack nvidia-ml-py einops psutil pydantic
  python -m pip install -q --no-index --find-links "$WHEELS" --no-build-isolation --no-deps deepspeed
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 480 python dev/gpu_check.py "$@"
