"""The paper's subjective "satisfactory" score, made objective and per instance.

Reference instances: every vertebral body, disc and foramen as a connected component of the
reference (26-connected, crumbs under ``MIN_INSTANCE_MM3`` ignored); the spinal canal and the
cord + cauda equina per sagittal slice, as the paper counts them. An instance is satisfactory
when at least ``RECALL`` (90 %) of its voxels are predicted as its structure and at least
``PRECISION`` (50 %) of the prediction touching it lies inside it, so that leaks and merged
neighbours do not pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from lumbar_jax.labels import STRUCTURES

RECALL = 0.9
PRECISION = 0.5
MIN_INSTANCE_MM3 = 20.0
# Structures counted per connected component; the others per sagittal slice.
PER_COMPONENT = ("vertebral_body", "intervertebral_disc", "intervertebral_foramen")


@dataclasses.dataclass
class Instance:
    """One reference instance and how well it was segmented."""

    structure: str
    where: str  # "component" or "slice K"
    centroid_mm: tuple[float, float, float]  # canonical (d, h, w) mm
    voxels: int
    recall: float
    precision: float

    @property
    def satisfactory(self) -> bool:
        return self.recall >= RECALL and self.precision >= PRECISION


def instances(
    pred_dhw: np.ndarray,
    ref_dhw: np.ndarray,
    spacing_dhw: Sequence[float],
    labeled_c: np.ndarray | None = None,
) -> list[Instance]:
    """Every reference instance of every labelled structure, scored.

    Args:
      pred_dhw: predicted label map.
      ref_dhw: reference label map on the same grid.
      spacing_dhw: voxel size in mm.
      labeled_c: which classes the reference labels (others are skipped).
    """
    spacing = np.asarray(spacing_dhw, float)
    min_voxels = MIN_INSTANCE_MM3 / float(np.prod(spacing))
    full = np.ones((3, 3, 3), bool)
    out = []
    for value, name in enumerate(STRUCTURES, start=1):
        if labeled_c is not None and not labeled_c[value]:
            continue
        ref, pred = ref_dhw == value, pred_dhw == value
        if not ref.any():
            continue
        if name in PER_COMPONENT:
            ref_parts, n = ndimage.label(ref, structure=full)
            pred_parts, _ = ndimage.label(pred, structure=full)
            pred_sizes = np.bincount(pred_parts.ravel())
            objects = ndimage.find_objects(ref_parts)
            for k in range(1, n + 1):
                box = objects[k - 1]
                inst = ref_parts[box] == k
                size = int(inst.sum())
                if size < min_voxels:
                    continue
                hit = pred[box] & inst
                # Whole predicted pieces touching this instance (they may reach beyond its box).
                touched = int(pred_sizes[np.unique(pred_parts[box][hit])].sum())
                centroid = np.array(
                    [(s.start + c) for s, c in zip(box, _centre(inst), strict=True)]
                )
                out.append(
                    Instance(
                        name,
                        "component",
                        tuple(np.round(centroid * spacing, 1).tolist()),
                        size,
                        float(hit.sum() / size),
                        float(hit.sum() / touched) if touched else 0.0,
                    )
                )
        else:
            for d in np.nonzero(ref.any(axis=(1, 2)))[0]:
                inst = ref[d]
                size = int(inst.sum())
                if size < min_voxels:
                    continue
                hit = int((pred[d] & inst).sum())
                predicted = int(pred[d].sum())
                centroid = np.array([d, *_centre(inst)])
                out.append(
                    Instance(
                        name,
                        f"slice {d}",
                        tuple(np.round(centroid * spacing, 1).tolist()),
                        size,
                        hit / size,
                        hit / predicted if predicted else 0.0,
                    )
                )
    return out


def _centre(mask: np.ndarray) -> np.ndarray:
    return np.array([w.mean() for w in np.nonzero(mask)])


def rates(all_instances: list[Instance]) -> dict[str, tuple[int, int]]:
    """(satisfactory, total) per structure."""
    counts = {name: [0, 0] for name in STRUCTURES}
    for inst in all_instances:
        counts[inst.structure][0] += inst.satisfactory
        counts[inst.structure][1] += 1
    return {name: (s, t) for name, (s, t) in counts.items()}
