"""The demo behind ``make demo``: phantom data, a CPU-sized fine-stage run, the Dice table.

python -m lumbar_jax.demo --workdir=runs/demo
"""

from __future__ import annotations

import time

from absl import app, flags, logging

from lumbar_jax import config as config_lib
from lumbar_jax import trainer

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Run folder.")
_CONFIG = flags.DEFINE_string("config", "fine:cpu", "Config NAME[:ARG] of the demo run.")


def main(argv: list[str]) -> None:
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    del argv
    start = time.perf_counter()
    config = config_lib.load_config(_CONFIG.value)
    trainer.train_and_evaluate(config, f"{_WORKDIR.value}/fine")
    print(f"Demo finished in {time.perf_counter() - start:.0f} s; outputs in {_WORKDIR.value}.")


if __name__ == "__main__":
    app.run(main)
