"""The demo behind ``make demo``: the whole cascade on the built-in phantom, on a CPU.

  python -m lumbar_jax demo --workdir=runs/demo

Trains the coarse and the fine stage at CPU size, predicts one test series with the cascade
(label map, JSON report, PNG overlay), exports both stages to ONNX and predicts the series
again with onnxruntime, and evaluates the test split beside the paper's table, with the level
names and measurements scored against the phantom's truth.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from absl import flags

from lumbar_jax import config as config_lib
from lumbar_jax.cli import common
from lumbar_jax.data import datasets
from lumbar_jax.evaluation import cases, levels, predictors, reports
from lumbar_jax.evaluation.evaluator import Evaluator
from lumbar_jax.export import onnx
from lumbar_jax.inference import backends, writer
from lumbar_jax.training import loop

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Demo folder.")
_SIZE = flags.DEFINE_string("size", "cpu", "Config size of both stages (cpu, cpu_full or tiny).")
_OVERRIDES: dict[str, str] = {}


def _label_agreement(a: Path, b: Path) -> float:
    labels = [sitk.GetArrayViewFromImage(sitk.ReadImage(str(p))) for p in (a, b)]
    return float(np.mean(labels[0] == labels[1]))


def _train(workdir: Path) -> dict[str, float]:
    seconds = {}
    for name in ("coarse", "fine"):
        print(f"== Training the {name} stage ({name}:{_SIZE.value}) ==", flush=True)
        start = time.perf_counter()
        config = config_lib.load_config(f"{name}:{_SIZE.value}", _OVERRIDES)
        loop.train_and_evaluate(config, workdir / name)
        seconds[name] = time.perf_counter() - start
    return seconds


def _predict_and_export(workdir: Path, loaded: backends.LoadedCascade, case) -> None:
    print(f"== Predicting test series {case.case_id} with the cascade ==", flush=True)
    summary = writer.predict_series(
        loaded.coarse,
        loaded.fine,
        case.image_path,
        workdir / "predict",
        case.case_id,
        runs=loaded.description(),
    )
    found = summary["structures"]
    print(
        f"{case.case_id}: {len(found['vertebral_body']['components'])} vertebral bodies, "
        f"{len(found['intervertebral_disc']['components'])} discs; outputs in "
        f"{workdir / 'predict'} ({', '.join(summary['outputs'].values())})."
    )
    print("== Exporting both stages to ONNX; the same series with onnxruntime ==", flush=True)
    onnx_dir = workdir / "onnx"
    for trained in loaded.stages:
        checks = onnx.export_stage(trained, onnx_dir / f"{trained.config.stage}.onnx")
        worst = max(c.max_abs_diff for c in checks)
        agreement = min(c.argmax_agreement for c in checks)
        print(
            f"{onnx_dir / trained.config.stage}.onnx: verified, max |logit diff| {worst:.1e}, "
            f"argmax agreement {100 * agreement:.3f} %"
        )
    on_onnx = backends.load_cascade(onnx_dir / "coarse.onnx", onnx_dir / "fine.onnx")
    onnx_summary = writer.predict_series(
        on_onnx.coarse, on_onnx.fine, case.image_path, workdir / "predict_onnx", case.case_id
    )
    same = _label_agreement(
        workdir / "predict" / summary["outputs"]["labels"],
        workdir / "predict_onnx" / onnx_summary["outputs"]["labels"],
    )
    print(
        f"onnxruntime cascade: {onnx_summary['cascade']['seconds']['total']:.2f} s, label maps "
        f"agree on {100 * same:.3f} % of voxels with the JAX backend's "
        f"({summary['cascade']['seconds']['total']:.2f} s, compilation included)."
    )


def main(argv: list[str]) -> None:
    del argv
    start = time.perf_counter()
    workdir = Path(_WORKDIR.value)
    seconds = _train(workdir)
    loaded = backends.load_cascade(workdir / "coarse", workdir / "fine", "jax")
    fine_config = loaded.stages[1].config
    dataset = datasets.from_config(fine_config.data)
    split = fine_config.data.test_split
    _predict_and_export(workdir, loaded, dataset.split(split)[0])

    print("== Evaluating the cascade on the test split ==", flush=True)
    scorer = levels.LevelScorer(levels.load_truths(dataset, split), dataset.labeled_classes)
    evaluator = Evaluator(
        lambda: cases.series_cases(dataset, split), surface=True, instances=True, on_case=scorer
    )
    ev = evaluator(predictors.cascade_predictor(loaded.coarse, loaded.fine))
    title = f"Demo cascade on the phantom's {split} split ({len(ev.case_ids)} cases)"
    output = workdir / "evaluation"
    output.mkdir(parents=True, exist_ok=True)
    extra = {"levels": (scorer.markdown(), scorer.summary())} if scorer.scores else None
    meta = {
        "data": str(dataset.root),
        "split": split,
        "flip_tta": loaded.fine.flip_tta,
        "background_scale": loaded.fine.background_scale,
        "tile_step": loaded.fine.tile_step,
        "box_scales": list(loaded.fine.box_scales),
    }
    reports.write_reports(ev, output, title, meta, extra)
    print(reports.markdown(ev, title, max_missed=10))
    print(scorer.markdown())
    print(
        f"Demo finished in {time.perf_counter() - start:.0f} s (training: coarse "
        f"{seconds['coarse']:.0f} s, fine {seconds['fine']:.0f} s); outputs in {workdir}."
    )


cli = common.command(main, config_overrides=_OVERRIDES)

if __name__ == "__main__":
    cli()
