#!/usr/bin/env bash
# Train on N simulated CPU devices (data parallel over them), for trying the parallel code
# without GPUs. The devices share the machine's cores: this is a correctness tool, not a
# speed-up.
#   launch/cpu_devices.sh 4 --config=fine:tiny --workdir=runs/cpu4 --config.optim.batch_size=4
set -euo pipefail
n=${1:?usage: launch/cpu_devices.sh N [train flags...]}
shift
cd "$(dirname "$0")/.."
export XLA_FLAGS="--xla_force_host_platform_device_count=${n} ${XLA_FLAGS:-}"
exec "${PYTHON:-.venv/bin/python}" -m lumbar_jax.train "$@"
