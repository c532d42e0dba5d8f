"""What a stage's training samples contain: how often each structure is in a sample, and its
share of the voxels.

  python -m benchmarks.crop_content --config=fine:cpu [--samples=300] [--seed=0]

Draws ``--samples`` training samples as the grain pipeline makes them (crop or tile, spatial
augmentation; intensities do not matter here) from the config's training split, cycling over
its cases, and prints a Markdown table. For the fine stage it answers whether a small
structure is in every crop (so that foreground oversampling has nothing to add) and how few
of its voxels the network sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections
import numpy as np
from absl import app, flags

from lumbar_jax import config as config_lib
from lumbar_jax.data import datasets, pipeline, transforms
from lumbar_jax.labels import STRUCTURES


def crop_content(
    config: ml_collections.ConfigDict, dataset: datasets.Dataset, samples: int, seed: int = 0
) -> dict[str, dict[str, float]]:
    """{structure: {"present": share of samples holding it, "voxels": its mean voxel share}},
    and under "in-plane voxel mm" the median and largest in-plane voxel of the crops (before
    the random zoom).

    Only the geometry is drawn (crop, tile, spatial augmentation), with its own generator.
    """
    cases = dataset.split(config.data.train_split)
    source = pipeline.case_source(config.data, dataset, cases)
    make = pipeline.MakeSample(config.data, config.aug)
    shape = tuple(config.data.input_shape)
    rng = np.random.default_rng(seed)
    present = np.zeros(len(STRUCTURES))
    voxels = np.zeros(len(STRUCTURES))
    voxel_mm = []
    for i in range(samples):
        case = source[i % len(cases)]
        box = make.box(case, rng)
        # Square in-plane voxels (the box is widened to the input's aspect ratio).
        voxel_mm.append(float(box[1][1] - box[0][1]) / shape[1])
        geometry = pipeline.draw_geometry(config.aug, rng)
        affine = transforms.sampling_affine(box, shape, case.spacing_dhw, **geometry)
        label = transforms.resample(case.label_dhw, affine, shape, is_label=True)
        counts = np.bincount(label.ravel(), minlength=len(STRUCTURES) + 1)[1:]
        present += counts > 0
        voxels += counts / label.size
    content = {
        name: {"present": present[k] / samples, "voxels": voxels[k] / samples}
        for k, name in enumerate(STRUCTURES)
    }
    content["in-plane voxel mm"] = {
        "median": float(np.median(voxel_mm)),
        "max": float(np.max(voxel_mm)),
    }
    return content


def markdown(content: dict[str, dict[str, float]], spec: str, samples: int) -> str:
    lines = [
        f"Training samples of `{spec}` ({samples} drawn):",
        "",
        "| structure | in the sample | share of its voxels |",
        "|---|---|---|",
    ]
    for name in STRUCTURES:
        row = content[name]
        lines.append(f"| {name} | {100 * row['present']:.1f} % | {100 * row['voxels']:.2f} % |")
    voxel = content["in-plane voxel mm"]
    lines += [
        "",
        f"In-plane voxel: {voxel['median']:.2f} mm median, {voxel['max']:.2f} mm largest.",
    ]
    return "\n".join(lines)


_OVERRIDES: dict[str, str] = {}


def main(argv: Sequence[str]) -> None:
    del argv
    spec = flags.FLAGS.config
    config = config_lib.load_config(spec, _OVERRIDES)
    dataset = datasets.from_config(config.data)
    content = crop_content(config, dataset, flags.FLAGS.samples, flags.FLAGS.seed)
    print(markdown(content, spec, flags.FLAGS.samples))


if __name__ == "__main__":
    flags.DEFINE_string("config", "fine:cpu", "Config name with an optional :size.")
    flags.DEFINE_integer("samples", 300, "Samples to draw.")
    flags.DEFINE_integer("seed", 0, "Seed of the geometry draws.")
    app.run(main, flags_parser=config_lib.absl_flags_parser(_OVERRIDES))
