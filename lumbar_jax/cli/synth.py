"""Writes the built-in phantom dataset, and PNG previews of its cases.

  python -m lumbar_jax synth --output=DIR [--cases=80] [--seed=0] [--matrix=320]
      [--preview=PREVIEW_DIR] [--preview_dpi=100]

writes the nnU-Net raw layout (``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``,
``dataset.json`` with label names and a train/validation/test split). ``--preview`` writes, per
case, ``<case>_mid.png`` (the mid-sagittal slice) and ``<case>_para.png`` (a para-sagittal
slice through the foramina), each without and with the label overlay, in physical aspect
ratio; with ``--preview`` alone the cases are drawn and previewed but not written.
"""

from __future__ import annotations

from absl import app, flags

from lumbar_jax.cli import common
from lumbar_jax.data.phantom import dataset

_OUTPUT = flags.DEFINE_string("output", None, "Dataset folder to create.")
_PREVIEW = flags.DEFINE_string("preview", None, "Folder for PNG previews of each case.")
_PREVIEW_DPI = flags.DEFINE_integer("preview_dpi", 100, "Preview resolution.")
_CASES = flags.DEFINE_integer("cases", 80, "Number of series.")
_SEED = flags.DEFINE_integer("seed", 0, "Dataset seed.")
_MATRIX = flags.DEFINE_integer("matrix", 320, "In-plane matrix.")


def main(argv: list[str]) -> None:
    del argv
    if not _OUTPUT.value and not _PREVIEW.value:
        raise app.UsageError("give --output, --preview or both.")
    if _OUTPUT.value:
        path = dataset.write_dataset(
            _OUTPUT.value,
            _CASES.value,
            _SEED.value,
            _MATRIX.value,
            _PREVIEW.value,
            _PREVIEW_DPI.value,
        )
        print(f"Wrote {_CASES.value} phantom cases to {path}")
    else:
        dataset.write_previews_only(
            _PREVIEW.value, _CASES.value, _SEED.value, _MATRIX.value, _PREVIEW_DPI.value
        )
    if _PREVIEW.value:
        print(f"Wrote previews of {_CASES.value} cases to {_PREVIEW.value}")


cli = common.command(main)

if __name__ == "__main__":
    cli()
