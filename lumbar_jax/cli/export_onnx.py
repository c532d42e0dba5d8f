"""Exports trained stages to ONNX, each verified with onnxruntime before it is written.

  python -m lumbar_jax export_onnx --checkpoint=RUN --output=model.onnx
  python -m lumbar_jax export_onnx --cascade --coarse=RUN --fine=RUN --output=DIR
      (writes DIR/coarse.onnx and DIR/fine.onnx, for predict with those files)

RUN is a run folder (its best checkpoint, else the latest) or a checkpoint inside one. An
export that onnxruntime does not reproduce within the tolerance fails and writes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import flags

from lumbar_jax.cli import common

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Run folder or checkpoint to export.")
_OUTPUT = flags.DEFINE_string("output", None, "The .onnx file (with --cascade: a folder).")
_CASCADE = flags.DEFINE_bool("cascade", False, "Export --coarse and --fine together.")
_COARSE = flags.DEFINE_string("coarse", None, "With --cascade: the coarse run or checkpoint.")
_FINE = flags.DEFINE_string("fine", None, "With --cascade: the fine run or checkpoint.")
_TOLERANCE = flags.DEFINE_float(
    "tolerance", 1e-3, "Largest |logit difference|, relative to max(1, largest |logit|)."
)
_MIN_AGREEMENT = flags.DEFINE_float("min_agreement", 0.999, "Smallest argmax agreement.")


def _jobs() -> list[tuple]:
    """(stage, output file) pairs to export."""
    from lumbar_jax.inference import jax_stage  # JAX only once the arguments are sane

    if _CASCADE.value:
        common.require("coarse", "fine", why="with --cascade")
        coarse, fine = jax_stage.load_stages(_COARSE.value, _FINE.value)
        return [
            (coarse, Path(_OUTPUT.value) / "coarse.onnx"),
            (fine, Path(_OUTPUT.value) / "fine.onnx"),
        ]
    common.require("checkpoint", why="(or --cascade with --coarse and --fine)")
    return [(jax_stage.load_stage(_CHECKPOINT.value), Path(_OUTPUT.value))]


def main(argv: list[str]) -> None:
    del argv
    common.require("output")
    from lumbar_jax.export import onnx

    for trained, path in _jobs():
        start = time.perf_counter()
        results = onnx.export_stage(
            trained, path, tolerance=_TOLERANCE.value, min_agreement=_MIN_AGREEMENT.value
        )
        size = path.stat().st_size / 2**20
        print(
            f"{path}: {trained.config.get('stage')} stage (step {trained.step}), "
            f"{size:.1f} MiB, exported and verified in {time.perf_counter() - start:.1f} s"
        )
        for r in results:
            print(
                f"  {r.name:14s} batch {r.batch}: max |logit diff| {r.max_abs_diff:.2e} "
                f"(logit scale {r.logit_scale:.1f}), argmax agreement "
                f"{100 * r.argmax_agreement:.3f} %"
            )


cli = common.command(main)

if __name__ == "__main__":
    cli()
