#!/usr/bin/env bash
# Two processes on this machine joined over 127.0.0.1 with CPU collectives: the multi-host
# code path without a cluster. If either process fails, the other is stopped.
#   launch/two_process_local.sh --config=fine:tiny --workdir=runs/two_process
set -uo pipefail
cd "$(dirname "$0")/.."
port=${LUMBAR_JAX_PORT:-$("${PYTHON:-.venv/bin/python}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
pids=()
for id in 0 1; do
  "${PYTHON:-.venv/bin/python}" -m lumbar_jax.train "$@" \
    --coordinator_address="127.0.0.1:${port}" --num_processes=2 --process_id="${id}" &
  pids+=($!)
done
status=0
for _ in 0 1; do
  if ! wait -n; then
    status=1
    kill "${pids[@]}" 2>/dev/null
  fi
done
exit $status
