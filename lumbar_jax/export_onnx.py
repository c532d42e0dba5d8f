"""Exports trained stages to ONNX, each verified with onnxruntime before it is written.

  python -m lumbar_jax.export_onnx --checkpoint=RUN --output=model.onnx
  python -m lumbar_jax.export_onnx --cascade --coarse=RUN --fine=RUN --output=DIR
      (writes DIR/coarse.onnx and DIR/fine.onnx, for predict --backend=onnx)

RUN is a run folder (its best checkpoint, else the latest) or a checkpoint inside one. An
export that onnxruntime does not reproduce within the tolerance fails and writes nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags, logging

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Run folder or checkpoint to export.")
_OUTPUT = flags.DEFINE_string("output", None, "The .onnx file (with --cascade: a folder).")
_CASCADE = flags.DEFINE_bool("cascade", False, "Export --coarse and --fine together.")
_COARSE = flags.DEFINE_string("coarse", None, "With --cascade: the coarse run or checkpoint.")
_FINE = flags.DEFINE_string("fine", None, "With --cascade: the fine run or checkpoint.")
_TOLERANCE = flags.DEFINE_float(
    "tolerance", 1e-3, "Largest |logit difference|, relative to max(1, largest |logit|)."
)
_MIN_AGREEMENT = flags.DEFINE_float("min_agreement", 0.999, "Smallest argmax agreement.")


def main(argv: list[str]) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if not _OUTPUT.value:
        raise app.UsageError("--output is required.")
    if _CASCADE.value and not (_COARSE.value and _FINE.value):
        raise app.UsageError("--cascade needs --coarse and --fine.")
    if not _CASCADE.value and not _CHECKPOINT.value:
        raise app.UsageError("--checkpoint is required (or --cascade with --coarse, --fine).")
    from lumbar_jax import export, stage  # JAX only once the arguments are sane

    try:
        if _CASCADE.value:
            coarse, fine = stage.load_cascade(_COARSE.value, _FINE.value)
            jobs = [(coarse, Path(_OUTPUT.value) / "coarse.onnx")]
            jobs.append((fine, Path(_OUTPUT.value) / "fine.onnx"))
        else:
            jobs = [(stage.load_stage(_CHECKPOINT.value), Path(_OUTPUT.value))]
        for trained, path in jobs:
            start = time.perf_counter()
            results = export.export_stage(
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
    except (OSError, ValueError, export.ExportError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    app.run(main)
