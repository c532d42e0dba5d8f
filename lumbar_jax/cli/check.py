"""Checks a dataset before anyone trains on it.

  python -m lumbar_jax check DATASET [--layout=auto] [--label_map="1-5:2"] [--min_slices=5]

Reads every case and prints cases, shapes, spacings and voxels per label, then every problem
with the file it concerns (see ``lumbar_jax.data.check``). Exit status 0 clean, 1 problems,
2 when DATASET is not a dataset.
"""

from __future__ import annotations

import sys

from absl import app, flags

from lumbar_jax.cli import common
from lumbar_jax.data import check, datasets

_LAYOUT = flags.DEFINE_enum("layout", "auto", datasets.LAYOUTS, "Dataset layout.")
_LABEL_MAP = flags.DEFINE_string("label_map", "", 'Dataset values -> ours, e.g. "1-5:2".')
_MIN_SLICES = flags.DEFINE_integer("min_slices", 5, "Fewer sagittal slices is a problem.")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        raise app.UsageError("give one DATASET folder.")
    try:
        dataset = datasets.load_dataset(argv[1], _LAYOUT.value, _LABEL_MAP.value)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = check.check_dataset(dataset, _MIN_SLICES.value)
    print(check.format_report(dataset, report))
    return 1 if report.problems else 0


cli = common.command(main)

if __name__ == "__main__":
    cli()
