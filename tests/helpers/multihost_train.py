"""One process of a local multi-process training run on 127.0.0.1.

  python tests/helpers/multihost_train.py PORT NUM_PROCESSES PROCESS_ID DATA_ROOT WORKDIR [die]

Prints one JSON line: process id, final step and a hash of the final parameters. With
``die`` (process 1 only), the process kills itself right after the first train step.
"""

import hashlib
import json
import os
import signal
import sys

port, count, pid, root, workdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:6]
die = len(sys.argv) > 6 and sys.argv[6] == "die"

from lumbar_jax import config as config_lib  # noqa: E402
from lumbar_jax.training import distributed, loop  # noqa: E402

distributed.initialize(f"127.0.0.1:{port}", count, pid, heartbeat_timeout_s=5, shutdown_timeout_s=5)

import jax  # noqa: E402

config = config_lib.load_config("fine:tiny", {"data.root": root})
if die and pid == 1:
    original = loop.train_step

    def train_step_then_die(*args, **kwargs):
        out = original(*args, **kwargs)
        # Dies as soon as the first step has been traced; the peer is left waiting.
        os.kill(os.getpid(), signal.SIGKILL)
        return out

    loop.train_step = train_step_then_die
result = loop.train_and_evaluate(config, workdir, max_steps=2)
digest = hashlib.sha256()
for leaf in jax.tree.leaves(result["params"]):
    digest.update(leaf.tobytes())
print(json.dumps({"process": pid, "step": result["step"], "params_sha256": digest.hexdigest()}))
