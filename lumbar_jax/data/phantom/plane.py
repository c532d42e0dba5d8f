"""One sagittal plane being drawn: intensity, label and tissue, painted together."""

from __future__ import annotations

import dataclasses

import numpy as np

from lumbar_jax.data.phantom.tissues import ID


@dataclasses.dataclass
class Plane:
    """What a sagittal plane shows: T2 intensity, our label and the tissue, per point.

    Everything is drawn through ``paint``, so the tissue map always agrees with the image and
    the labels.
    """

    inten: np.ndarray  # float32, the phantom's own T2 contrast
    label: np.ndarray  # uint8, labels.LABEL_NAMES
    tissue: np.ndarray  # uint8, tissues.NAMES

    @classmethod
    def of_shape(cls, shape: tuple[int, ...]) -> Plane:
        """An empty plane: muscle, no structure."""
        return cls(
            np.full(shape, 0.27, np.float32),
            np.zeros(shape, np.uint8),
            np.full(shape, ID["muscle"], np.uint8),
        )

    def paint(
        self,
        where: np.ndarray,
        intensity: float | np.ndarray,
        tissue: int | np.ndarray,
        label: int | None = None,
    ) -> None:
        """Draws ``tissue`` (an id, or one per point) with ``intensity`` where ``where`` holds.

        Args:
          where: bool mask of the points to draw.
          intensity: the T2 intensity there (a number or an array of the plane's shape).
          tissue: the tissue id (a number or an array of the plane's shape).
          label: the structure label to set there; None keeps the labels as they are (a
            tissue drawn inside a structure, like its cortex, or around them).
        """
        self.inten[where] = intensity if np.ndim(intensity) == 0 else intensity[where]
        self.tissue[where] = tissue if np.ndim(tissue) == 0 else tissue[where]
        if label is not None:
            self.label[where] = label
