"""Running the project's commands as a user would: ``python -m lumbar_jax COMMAND ...``."""

from __future__ import annotations

import subprocess
import sys


def run_command(
    *args, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Runs ``python -m lumbar_jax ARGS...``; returns the completed process (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "lumbar_jax", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        env=env,
    )
