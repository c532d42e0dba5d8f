"""The commands: ``python -m lumbar_jax COMMAND [flags]`` or ``lumbar-jax COMMAND [flags]``.

Each is also a module of its own (``python -m lumbar_jax.cli.predict ...``), and
``python -m lumbar_jax.train`` trains as before.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "synth": "write the phantom dataset (and PNG previews)",
    "check": "check a dataset before training on it",
    "train": "train one stage of the cascade",
    "score": "a trained stage's Dice on any dataset (network input space)",
    "predict": "coarse-to-fine prediction of series: label maps, JSON reports, overlays",
    "evaluate": "score a cascade on a dataset split in the paper's terms",
    "evaluate_real": "score a cascade on the real series in ../shared/data/real",
    "tune_decision": "choose the cascade's per-structure background scales on a validation split",
    "levels": "level names and measurements of a dataset's reference label maps vs its truth",
    "export_onnx": "export trained stages to ONNX, verified with onnxruntime",
    "demo": "the whole cascade on the built-in phantom (make demo)",
}


def main(argv: list[str] | None = None) -> None:
    """Runs ``COMMAND`` with the remaining arguments as its own command line."""
    argv = list(sys.argv if argv is None else argv)
    name = argv[1].replace("-", "_") if len(argv) > 1 else ""
    if name not in COMMANDS:
        width = max(map(len, COMMANDS))
        listing = "\n".join(f"  {n.ljust(width)}  {what}" for n, what in COMMANDS.items())
        print(f"usage: lumbar-jax COMMAND [--flags] (--help for a command's flags)\n\n{listing}")
        sys.exit(0 if name in ("", "help", "__help", "_h") else 2)
    module = importlib.import_module(f"lumbar_jax.cli.{name}")
    # absl's --help shows the main module's docstring and the flags of the module named by
    # argv[0]: make both the command's.
    sys.modules["__main__"].__doc__ = module.__doc__
    sys.argv = [module.__name__, *argv[2:]]
    module.cli()
