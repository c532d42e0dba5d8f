#!/usr/bin/env bash
# Single host, every visible GPU: one process drives all of them (data parallel).
# Expects a CUDA build of jax: pip install -e '.[cuda]'. Choose GPUs with CUDA_VISIBLE_DEVICES.
#   launch/local_multigpu.sh --config=fine --workdir=runs/fine --config.optim.batch_size=8
# The global batch (config.optim.batch_size) must be a multiple of the number of GPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
# Let XLA take GPU memory as it needs instead of 75 % up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
exec "${PYTHON:-.venv/bin/python}" -m lumbar_jax.train "$@"
