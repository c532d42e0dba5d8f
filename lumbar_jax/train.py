"""``python -m lumbar_jax.train --config=fine --workdir=runs/fine``: see ``lumbar_jax.cli.train``."""

from lumbar_jax.cli.train import cli

if __name__ == "__main__":
    cli()
