"""One acquired series of a phantom patient: thick slices, partial volume, bias, noise.

Each case's anatomy (``anatomy.py``) is drawn in patient millimetres, one sagittal plane at a
time; this module adds the acquisition: thick slices with partial-volume averaging, an
in-plane point spread, a bias field, Rician noise, a per-scanner intensity scale and tilted
direction cosines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lumbar_jax.data.phantom.anatomy import Phantom


@dataclass
class Acquisition:
    """How a case was scanned: slices, matrix, pixel size, intensity scale, noise, tilt."""

    num_slices: int
    slice_spacing: float
    slice_thickness: float
    matrix: int
    pixel: float
    scale: float
    noise: float
    tilt_deg: float


def _random_acquisition(rng: np.random.Generator, matrix: int) -> Acquisition:
    thickness = rng.uniform(3.5, 5.0)
    fov = rng.uniform(220.0, 400.0)  # real series: 220-380 mm (../shared/data/real)
    return Acquisition(
        num_slices=int(rng.integers(12, 21)),
        slice_spacing=thickness * rng.uniform(1.05, 1.1),
        slice_thickness=thickness,
        matrix=matrix,
        pixel=fov / matrix,
        scale=rng.uniform(300.0, 3000.0),
        noise=rng.uniform(0.015, 0.04),
        tilt_deg=rng.uniform(-6.0, 6.0),
    )


@dataclass
class RenderedCase:
    """One phantom case as scanned, in canonical layout, and what it was drawn from.

    Canonical voxel (d, h, w) is the phantom's point (x, y, z) = (``slice_x_mm[d]``,
    (h + 0.5) * pixel, (w + 0.5) * pixel) in the anatomy's millimetres (``anatomy.py``).

    Attributes:
      image_dhw: the series (int16).
      label_dhw: our labels at each slice's centre plane (uint8).
      tissue_dhw: the tissue at each slice's centre plane (uint8, ``tissues.NAMES``).
      acquisition: slices, matrix, pixel size, ...
      phantom: the drawn patient (spine segments, canal, cord, pathology).
      slice_x_mm: left-right position of each slice's centre plane (mm).
    """

    image_dhw: np.ndarray
    label_dhw: np.ndarray
    tissue_dhw: np.ndarray
    acquisition: Acquisition
    phantom: Phantom
    slice_x_mm: np.ndarray

    @property
    def spacing_dhw(self) -> tuple[float, float, float]:
        a = self.acquisition
        return (a.slice_spacing, a.pixel, a.pixel)


def render_case(seed: int, matrix: int = 320) -> RenderedCase:
    """Draws one case.

    Args:
      seed: the case's seed; the same seed gives the same case.
      matrix: in-plane matrix (the field of view is drawn, so the pixel size varies).
    """
    rng = np.random.default_rng(seed)
    acq = _random_acquisition(rng, matrix)
    fov = acq.pixel * matrix
    phantom = Phantom(rng, fov)
    coords = (np.arange(matrix) + 0.5) * acq.pixel
    y, z = np.meshgrid(coords, coords, indexing="ij")
    centre_x = (np.arange(acq.num_slices) - (acq.num_slices - 1) / 2) * acq.slice_spacing
    centre_x = centre_x + rng.uniform(-3.0, 3.0)
    image = np.zeros((acq.num_slices, matrix, matrix), np.float32)
    label = np.zeros((acq.num_slices, matrix, matrix), np.uint8)
    tissue = np.zeros((acq.num_slices, matrix, matrix), np.uint8)
    for d, xc in enumerate(centre_x):
        # Partial volume: the slice integrates tissue across its thickness.
        offsets = (-0.33, 0.0, 0.33)
        for k, off in enumerate(offsets):
            plane = phantom.plane(xc + off * acq.slice_thickness, y, z)
            image[d] += plane.inten / len(offsets)
            if k == 1:  # labels and tissues of the slice's centre plane
                label[d], tissue[d] = plane.label, plane.tissue
    # The in-plane point spread of a finite k-space matrix: edges spread over about a pixel
    # instead of the drawing's hard steps.
    image = ndimage.gaussian_filter(image, sigma=(0.0, 0.4, 0.4))
    # Smooth multiplicative bias field, as from receive coils.
    yy = (y / fov - 0.5)[None]
    zz = (z / fov - 0.5)[None]
    c = rng.uniform(-0.35, 0.35, size=5)
    bias = np.exp(c[0] * yy + c[1] * zz + c[2] * yy * zz + c[3] * yy**2 + c[4] * zz**2)
    image = image * bias
    # Rician noise: magnitude of a complex signal with Gaussian noise in both channels.
    real = image + acq.noise * rng.standard_normal(image.shape, dtype=np.float32)
    imag = acq.noise * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.sqrt(real**2 + imag**2) * acq.scale
    image = np.clip(np.round(image), 0, 32767).astype(np.int16)
    return RenderedCase(image, label, tissue, acq, phantom, centre_x)


def tilt(deg: float) -> np.ndarray:
    """Rotation about the left-right axis (LPS x), in LPS coordinates."""
    t = math.radians(deg)
    return np.array(
        [[1.0, 0.0, 0.0], [0.0, math.cos(t), -math.sin(t)], [0.0, math.sin(t), math.cos(t)]]
    )
