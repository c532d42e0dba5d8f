"""``python -m lumbar_jax COMMAND [flags]``: see ``lumbar_jax.cli``."""

from lumbar_jax.cli import main

if __name__ == "__main__":
    main()
