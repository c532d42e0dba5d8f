"""Chooses the cascade's per-structure background scales on a validation split.

  python -m lumbar_jax tune_decision --coarse=RUN[,RUN] --fine=RUN[,RUN] --data=DIR
      --output=DIR [--split=validation] [--grid=1,0.8,...] [--tolerance=0.01]
      [--start=0.8] [--fixed=vertebral_body=0.8] [--rounds=2]

Give several cascades (e.g. two seeds' demo runs, the coarse and fine runs paired in order) to
choose for the recipe rather than for one run. Each series' fine-stage probabilities are
computed once; then, one structure at a time, every scale of ``--grid`` is scored (mean Dice
and satisfactory instances, summed over the runs) and the structure keeps the scale with the
most satisfactory instances whose mean Dice is within ``--tolerance`` of its best
(``evaluation/decision.py``). DIR receives decision_sweep.md (every trial) and
decision_sweep.json; the last line printed is the ``--config.inference.background_scale`` to
train with, or ``--background_scale`` for ``evaluate``.
"""

from __future__ import annotations

import json

import numpy as np
from absl import app, flags

from lumbar_jax.cli import common
from lumbar_jax.data import datasets
from lumbar_jax.evaluation import cases, decision
from lumbar_jax.files import write_text
from lumbar_jax.inference import backends, writer
from lumbar_jax.labels import STRUCTURES

_COARSE = flags.DEFINE_list("coarse", None, "Coarse stages: runs or .onnx files, in order.")
_FINE = flags.DEFINE_list("fine", None, "Fine stages, paired with --coarse in order.")
_DATA = flags.DEFINE_string("data", None, "Dataset folder (or mix .json) with labels.")
_SPLIT = flags.DEFINE_string("split", "validation", "The split to choose on.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the reports (created).")
_GRID = flags.DEFINE_list(
    "grid", ["1", "0.8", "0.7", "0.6", "0.5", "0.45", "0.4", "0.35", "0.3"], "Scales tried."
)
_TOLERANCE = flags.DEFINE_float(
    "tolerance", 0.01, "How far under its best mean Dice a structure may go (0.01: 1 point)."
)
_START = flags.DEFINE_list("start", ["0.8"], "Scales to start from: one for all, or five.")
_FIXED = flags.DEFINE_list(
    "fixed", [], "Structures held at a scale, not swept (e.g. vertebral_body=0.8)."
)
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Passes over the structures.")


def _fixed() -> dict[int, float]:
    out = {}
    for item in _FIXED.value:
        name, _, value = item.partition("=")
        if name not in STRUCTURES:
            raise app.UsageError(f"--fixed={item}: {name!r} is not one of {', '.join(STRUCTURES)}.")
        try:
            out[STRUCTURES.index(name)] = float(value)
        except ValueError as err:
            raise app.UsageError(f"--fixed={item}: {err}.") from err
    return out


def _trial_row(trial: decision.Trial) -> str:
    k = STRUCTURES.index(trial.structure)
    per_run = " / ".join(f"{s.dice_s[k]:.4f}" for s in trial.scores)
    good, total = trial.satisfactory(k)
    return (
        f"| {trial.round} | {trial.structure} | {trial.scale:g} | {per_run} | "
        f"{trial.dice(k):.4f} | {good}/{total} |"
    )


def _markdown(chosen, start_score, end_score, trials, meta) -> str:
    lines = [
        "# Background scales chosen on a validation split",
        "",
        *(f"- {key}: {value}" for key, value in meta.items()),
        f"- chosen: `{','.join(f'{s:g}' for s in chosen)}` (body, disc, foramen, canal, cord)",
        "",
        "| structure | mean Dice, start | mean Dice, chosen | satisfactory, start | "
        "satisfactory, chosen |",
        "|---|---|---|---|---|",
    ]
    for k, name in enumerate(STRUCTURES):
        s0, s1 = start_score.satisfactory(k), end_score.satisfactory(k)
        lines.append(
            f"| {name} | {start_score.dice(k):.4f} | {end_score.dice(k):.4f} | "
            f"{s0[0]}/{s0[1]} | {s1[0]}/{s1[1]} |"
        )
    lines += [
        "",
        "| round | structure | scale | Dice per run | mean Dice | satisfactory |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_trial_row(t) for t in trials]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    common.require("coarse", "fine", "data", "output")
    if len(_COARSE.value) != len(_FINE.value):
        raise app.UsageError(
            f"--coarse has {len(_COARSE.value)} runs and --fine {len(_FINE.value)}; pair them."
        )
    grid = common.float_list("grid")
    start = common.background_scale("start")
    fixed = _fixed()
    dataset = datasets.load_dataset_or_mix(_DATA.value)
    split = dataset.with_all_split(_SPLIT.value)
    output = writer.check_output_folder(_OUTPUT.value)
    runs = []
    for coarse_path, fine_path in zip(_COARSE.value, _FINE.value, strict=True):
        loaded = backends.load_cascade(coarse_path, fine_path)
        print(f"Caching the fine stage's probabilities: {loaded.description()}")
        runs.append(decision.cache(loaded.coarse, loaded.fine, cases.series_cases(dataset, split)))
    chosen, trials = decision.sweep(
        runs,
        grid,
        _TOLERANCE.value,
        start=start,
        fixed=fixed,
        rounds=_ROUNDS.value,
        log=lambda t: print(_trial_row(t), flush=True),
    )

    def scored(scales) -> decision.Trial:
        return decision.Trial(-1, "", 0.0, tuple(decision.score(run, scales) for run in runs))

    held = [fixed.get(k, value) for k, value in enumerate(start)]
    start_score, end_score = scored(held), scored(chosen)
    meta = {
        "data": str(dataset.root),
        "split": split,
        "runs": ", ".join(f"{c} + {f}" for c, f in zip(_COARSE.value, _FINE.value, strict=True)),
        "series per run": len(runs[0]),
        "tolerance": _TOLERANCE.value,
        "start": ",".join(f"{s:g}" for s in held),
        "fixed": ", ".join(f"{STRUCTURES[k]}={v:g}" for k, v in fixed.items()) or "none",
    }
    write_text(
        output / "decision_sweep.md", _markdown(chosen, start_score, end_score, trials, meta)
    )
    document = {
        **meta,
        "chosen": list(chosen),
        "start_score": _as_dict(start_score),
        "chosen_score": _as_dict(end_score),
        "trials": [
            {"round": t.round, "structure": t.structure, "scale": t.scale, **_as_dict(t)}
            for t in trials
        ],
    }
    write_text(output / "decision_sweep.json", json.dumps(document, indent=1) + "\n")
    print(f"Reports in {output}. Chosen (body, disc, foramen, canal, cord):")
    print(f'--config.inference.background_scale="({",".join(f"{s:g}" for s in chosen)})"')


def _as_dict(trial: decision.Trial) -> dict:
    return {
        "dice_per_run": [np.round(s.dice_s, 4).tolist() for s in trial.scores],
        "satisfactory_per_run": [s.satisfactory_s.tolist() for s in trial.scores],
        "instances_per_run": [s.instances_s.tolist() for s in trial.scores],
    }


cli = common.command(main)

if __name__ == "__main__":
    cli()
