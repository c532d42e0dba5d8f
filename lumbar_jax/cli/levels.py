"""Level names and measurements of a dataset's reference label maps, against its truth.

  python -m lumbar_jax levels --data=DATASET [--split=test] [--output=DIR]
      [--layout=auto] [--label_map=...]

Names the bodies and discs of every reference label map of the split and measures them as
``predict`` does (no model needed). Prints per case the names, level_confidence and its
reasons; where the dataset has the phantom's truth files (``labelsTr/<case>_truth.json``),
also the naming accuracy and each measurement's error against the truth, i.e. the error of
the measurements alone, free of segmentation error. DIR (optional) receives levels.md and
levels.json.
"""

from __future__ import annotations

import json
import time

from absl import flags

from lumbar_jax import files
from lumbar_jax.cli import common
from lumbar_jax.data import datasets
from lumbar_jax.evaluation import cases, levels
from lumbar_jax.inference import levels as naming
from lumbar_jax.inference import writer

_DATA = flags.DEFINE_string("data", None, "Dataset folder.")
_LAYOUT = flags.DEFINE_enum("layout", "auto", datasets.LAYOUTS, "Dataset layout.")
_LABEL_MAP = flags.DEFINE_string("label_map", "", "Dataset values -> ours, e.g. '1-5:2'.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to name and measure, or 'all' cases.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for levels.md and levels.json.")


def main(argv: list[str]) -> None:
    del argv
    common.require("data")
    start = time.perf_counter()
    dataset = datasets.load_dataset(_DATA.value, _LAYOUT.value, _LABEL_MAP.value)
    split = dataset.with_all_split(_SPLIT.value)
    output = writer.check_output_folder(_OUTPUT.value) if _OUTPUT.value else None
    truths = levels.load_truths(dataset, split)
    scorer = levels.LevelScorer(truths, dataset.labeled_classes)
    per_case = {}
    for case in cases.series_cases(dataset, split):
        named = naming.name_levels(case.reference_dhw, case.spacing_dhw, dataset.labeled_classes)
        per_case[case.case_id] = named.summary()
        print(
            f"{case.case_id}: {' '.join(c.name for c in named.named())} "
            f"(level_confidence {named.confidence}{': ' if named.reasons else ''}"
            f"{'; '.join(named.reasons)})"
        )
        scorer(case, {})
    title = f"# Levels of the reference label maps: {split} split of {_DATA.value}\n"
    text = title + "\n" + (scorer.markdown() or "No truth files: nothing to score.\n")
    print(text)
    if output is not None:
        document = {"data": str(_DATA.value), "split": split, "cases": per_case}
        document["scores"] = scorer.summary()
        files.write_text(output / "levels.md", text)
        files.write_text(output / "levels.json", json.dumps(document, indent=1))
        print(f"Reports in {output}.")
    print(f"{len(per_case)} cases in {time.perf_counter() - start:.0f} s.")


cli = common.command(main)

if __name__ == "__main__":
    cli()
