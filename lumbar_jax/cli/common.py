"""What every command shares: absl flags, quiet logging by default, and clean error exits.

A command module defines its flags and ``main(argv)``, and ends with ``cli = common.command(main)``
plus the usual ``if __name__ == "__main__": cli()``. Errors a user can cause (a missing file, a
dataset that fails its check, a config that does not fit) are raised as ``OSError``,
``ValueError`` or ``FloatingPointError`` with a message naming the file; they print as
``error: ...`` and exit with status 1, without a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app, flags, logging

from lumbar_jax import config as config_lib
from lumbar_jax.inference import cascade

# The errors a user can cause; anything else is a bug and keeps its traceback.
USER_ERRORS = (OSError, ValueError, FloatingPointError)

Main = Callable[[list[str]], int | None]


def command(main: Main, *, config_overrides: dict[str, str] | None = None) -> Callable[[], None]:
    """The entry point of a command: ``cli()`` parses flags and runs ``main``.

    Args:
      main: ``main(argv)``; argv holds the program name and the positional arguments. Its
        return value is the exit status (None: 0).
      config_overrides: for commands with ``--config``: the dict that receives the
        ``--config.a.b=v`` overrides, which absl does not know.
    """

    def guarded(argv: list[str]) -> int | None:
        if not flags.FLAGS["verbosity"].present:
            # orbax and others log every file they write at INFO.
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except USER_ERRORS as e:
            sys.exit(f"error: {e}")

    def cli() -> None:
        if config_overrides is None:
            app.run(guarded)
        else:
            app.run(guarded, flags_parser=config_lib.absl_flags_parser(config_overrides))

    return cli


def float_list(name: str) -> list[float] | None:
    """The list flag ``name`` as floats; None when it is not given.

    Raises:
      app.UsageError: naming the flag, for a value that is not a number.
    """
    values = flags.FLAGS[name].value
    if values is None:
        return None
    try:
        return [float(v) for v in values]
    except ValueError as err:
        raise app.UsageError(f"--{name}={','.join(values)}: {err}.") from err


def background_scale(name: str = "background_scale") -> tuple[float, ...] | None:
    """The list flag ``name`` as one background scale per structure (``cascade.decide``);
    None when it is not given.

    Raises:
      app.UsageError: naming the flag, for values that are not numbers, a count other than
        one or five, or a scale outside (0, 1].
    """
    values = float_list(name)
    if values is None:
        return None
    try:
        return cascade.check_background_scale(values, f"--{name}")
    except ValueError as err:
        raise app.UsageError(str(err)) from err


def require(*names: str, why: str = "") -> None:
    """Raises a usage error unless every named flag has a value.

    For requirements that depend on other flags; ``flags.mark_flags_as_required`` covers
    the unconditional ones.
    """
    missing = [f"--{n}" for n in names if flags.FLAGS[n].value in (None, "")]
    if missing:
        raise app.UsageError(f"{' and '.join(missing)} required{' ' + why if why else ''}.")
