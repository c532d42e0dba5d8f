"""Validates a dataset before anyone trains on it (``python -m lumbar_jax check``).

Checks every case: image and label readable and 3D, equal geometry (size, spacing, origin,
direction), label values declared by the dataset, image values finite and not constant, enough
slices; reports a summary (cases, shapes, spacings, voxels per label) and every problem with
the file it concerns. Training runs the same check first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from lumbar_jax.data import io
from lumbar_jax.data.datasets import Case, Dataset
from lumbar_jax.labels import LABEL_NAMES


@dataclass
class Report:
    """What ``check_dataset`` found."""

    cases: int = 0
    shapes: Counter = field(default_factory=Counter)  # canonical (d, h, w)
    spacings: list[tuple[float, float, float]] = field(default_factory=list)
    voxels_per_label: Counter = field(default_factory=Counter)  # our label values
    problems: list[str] = field(default_factory=list)  # "<file>: <what is wrong>"


def _geometry_problem(image: sitk.Image, label: sitk.Image) -> str | None:
    if image.GetSize() != label.GetSize():
        return f"size {label.GetSize()} differs from the image's {image.GetSize()}"
    if not np.allclose(image.GetSpacing(), label.GetSpacing(), rtol=1e-3):
        return f"spacing {label.GetSpacing()} differs from the image's {image.GetSpacing()}"
    if not np.allclose(image.GetOrigin(), label.GetOrigin(), atol=1e-2):
        return f"origin {label.GetOrigin()} differs from the image's {image.GetOrigin()}"
    if not np.allclose(image.GetDirection(), label.GetDirection(), atol=1e-4):
        return "direction cosines differ from the image's"
    return None


def check_case(case: Case, dataset: Dataset, min_slices: int, report: Report) -> None:
    """Adds one case's findings to ``report``."""
    try:
        image = io.read_image(case.image_path)
        label = io.read_image(case.label_path)
    except io.ImageReadError as e:
        report.problems.append(str(e))
        return
    mismatch = _geometry_problem(image, label)
    if mismatch:
        report.problems.append(f"{case.label_path}: {mismatch}.")
        return
    image_dhw, spacing = io.to_canonical(image)
    label_dhw, _ = io.to_canonical(label)
    report.cases += 1
    report.shapes[image_dhw.shape] += 1
    report.spacings.append(spacing)
    if image_dhw.shape[0] < min_slices:
        report.problems.append(
            f"{case.image_path}: {image_dhw.shape[0]} sagittal slices, fewer than {min_slices}."
        )
    if not np.isfinite(image_dhw).all():
        report.problems.append(f"{case.image_path}: image holds NaN or Inf values.")
    elif image_dhw.min() == image_dhw.max():
        report.problems.append(f"{case.image_path}: image is constant ({image_dhw.min()}).")
    if np.issubdtype(label_dhw.dtype, np.floating) and not np.array_equal(
        label_dhw, np.round(label_dhw)
    ):
        report.problems.append(f"{case.label_path}: label values are not integers.")
        return
    values, counts = np.unique(label_dhw.astype(np.int64), return_counts=True)
    label_map = dataset.label_map_of(case)
    unknown = sorted(set(values.tolist()) - set(label_map))
    if unknown:
        report.problems.append(
            f"{case.label_path}: label values {unknown} are not declared; "
            f"known values: {sorted(label_map)}."
        )
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        if value in label_map:
            report.voxels_per_label[label_map[value]] += count


def check_dataset(dataset: Dataset, min_slices: int = 5) -> Report:
    """Checks every case of every split."""
    report = Report()
    for case in dataset.cases.values():
        check_case(case, dataset, min_slices, report)
    if not dataset.cases:
        report.problems.append(f"{dataset.root}: the dataset has no cases.")
    return report


def format_report(dataset: Dataset, report: Report) -> str:
    lines = [f"Dataset {dataset.root}: {len(dataset.cases)} cases, {report.cases} readable."]
    lines.append("splits: " + ", ".join(f"{k} {len(v)}" for k, v in dataset.splits.items()))
    for shape, n in report.shapes.most_common():
        lines.append(f"shape (slices, SI, AP) {shape}: {n} cases")
    if report.spacings:
        sp = np.array(report.spacings)
        lines.append(
            "spacing mm (slices, SI, AP): min "
            + str(tuple(np.round(sp.min(0), 2).tolist()))
            + ", max "
            + str(tuple(np.round(sp.max(0), 2).tolist()))
        )
    for value, name in enumerate(LABEL_NAMES):
        labeled = dataset.labeled_classes[value]
        count = report.voxels_per_label.get(value, 0)
        lines.append(
            f"label {value} {name}: {count} voxels" + ("" if labeled else " (not labelled)")
        )
    if report.problems:
        lines.append(f"{len(report.problems)} problem(s):")
        lines.extend(f"  {p}" for p in report.problems)
    else:
        lines.append("No problems found.")
    return "\n".join(lines)
