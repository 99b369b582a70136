#!/usr/bin/env bash
# The GPU check, unattended, on the lent GPU machine (one GPU; Python 3.12, torch, Lightning, transformers; no
# DeepSpeed, no vLLM, no package registry). Build the wheels it lacks first, on a machine with a registry:
#   make gpu-wheels          (dev/gpu/wheels, size-checked against the 64 MiB that travel; carry that folder)
# then on the GPU machine:  bash dev/gpu_check.sh [--steps 3]      (prints one JSON line per section)
# and anywhere, to check the script itself on CPU:  bash dev/gpu_check.sh --dry-run
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-dev/gpu/wheels}
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import deepspeed, jsonargparse, math_verify" 2>/dev/null; then
  if ! ls "$WHEELS"/deepspeed-*.tar.gz >/dev/null 2>&1; then
    echo "gpu_check: DeepSpeed, jsonargparse or math-verify is not installed and $WHEELS has no wheels: run 'make gpu-wheels' where a registry is reachable and carry $WHEELS" >&2
    exit 2
  fi
  # pydantic and pydantic-core as the pinned pair make gpu-wheels downloaded; --no-deps keeps pip off the network
  "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" hjson ninja py-cpuinfo msgpack nvidia-ml-py \
    einops psutil annotated-types typing-inspection typing-extensions pydantic pydantic-core setuptools wheel \
    jsonargparse docstring-parser typeshed-client math-verify latex2sympy2-extended antlr4-python3-runtime
  # DeepSpeed's sdist, built against the torch already here (its ops compile on first use; nvcc is there)
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --find-links "$WHEELS" deepspeed
fi
# Rendezvous variables for one process: with them DeepSpeed never probes MPI (Lightning gets a cluster environment).
export MASTER_ADDR=127.0.0.1 MASTER_PORT=${MASTER_PORT:-29517} RANK=0 LOCAL_RANK=0 WORLD_SIZE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout "${GPU_CHECK_TIMEOUT:-540}" "$PY" dev/gpu_check.py "$@"
