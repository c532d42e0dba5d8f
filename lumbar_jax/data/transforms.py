"""Per-case preprocessing on the host: windowing, crop boxes, resampling, intensity changes.

Cropping, resizing to the network's shape and the spatial augmentations (rotation in the
sagittal plane, small out-of-plane tilts, translation, scaling) are composed into one affine map
from output voxels to source voxels, so each sample is interpolated once, straight from the
source volume. The intensity augmentations (bias field, contrast, gamma) act on the resampled
sample, which is smaller than the source."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

Box = tuple[np.ndarray, np.ndarray]  # (low, high) corners in mm, voxel centres at index*spacing


def auto_window(
    image_dhw: np.ndarray, percentiles: Sequence[float] = (0.5, 99.5), source: str | Path = ""
) -> np.ndarray:
    """Automatic window level/width: maps the percentile range to [0, 1] (float32) and clips.

    Raises:
      ValueError: for non-finite or constant images (naming ``source``).
    """
    image = np.asarray(image_dhw, np.float32)
    if not np.isfinite(image).all():
        raise ValueError(f"{source}: image holds NaN or Inf values.")
    lo, hi = np.percentile(image, percentiles)
    if hi <= lo:
        lo, hi = float(image.min()), float(image.max())
        if hi <= lo:
            raise ValueError(f"{source}: image is constant ({lo}); nothing to segment.")
    # float32 bounds: numpy's float64 percentiles would promote the whole volume to float64,
    # doubling memory, cache size and resampling time.
    lo, hi = np.float32(lo), np.float32(hi)
    return np.clip((image - lo) / (hi - lo), np.float32(0), np.float32(1))


def image_box(shape_dhw: Sequence[int], spacing_dhw: Sequence[float]) -> Box:
    """The box covering every voxel of a volume."""
    spacing = np.asarray(spacing_dhw, float)
    return -0.5 * spacing, (np.asarray(shape_dhw) - 0.5) * spacing


def label_box(
    label_dhw: np.ndarray,
    spacing_dhw: Sequence[float],
    margin_mm: Sequence[float],
    out_shape_dhw: Sequence[int] | None = None,
) -> Box:
    """Box around every labelled voxel plus a margin; the whole volume if nothing is labelled.

    Args:
      label_dhw: the label map (or a predicted one).
      spacing_dhw: voxel size in mm.
      margin_mm: margin added on each side, per axis (3,); or (2, 3): the low and the high
        side's margins apart.
      out_shape_dhw: when given, the in-plane (h, w) box is widened to the aspect ratio of
        the output, so that the crop keeps square in-plane voxels.
    """
    spacing = np.asarray(spacing_dhw, float)
    where = np.nonzero(label_dhw)
    if where[0].size == 0:
        return image_box(label_dhw.shape, spacing)
    margin_low, margin_high = np.broadcast_to(np.asarray(margin_mm, float), (2, 3))
    lo = np.array([w.min() for w in where]) * spacing - 0.5 * spacing - margin_low
    hi = np.array([w.max() for w in where]) * spacing + 0.5 * spacing + margin_high
    if out_shape_dhw is not None:
        return widen_to_aspect((lo, hi), out_shape_dhw)
    return lo, hi


def widen_to_aspect(box: Box, out_shape_dhw: Sequence[int]) -> Box:
    """``box`` widened in-plane (h or w) to the output's h : w, about its centre.

    Resampled to ``out_shape_dhw``, the widened box has square in-plane voxels.
    """
    lo, hi = (np.array(b, float) for b in box)
    size = hi - lo
    target = out_shape_dhw[1] / out_shape_dhw[2]  # h / w
    centre = (lo + hi) / 2
    if size[1] / size[2] > target:
        size[2] = size[1] / target
    else:
        size[1] = size[2] * target
    lo[1:], hi[1:] = centre[1:] - size[1:] / 2, centre[1:] + size[1:] / 2
    return lo, hi


def tile_height(box: Box, count: int, overlap: float) -> float:
    """Height (mm) of each of ``count`` tiles that cover ``box``'s height, neighbours
    sharing ``overlap`` of a tile."""
    height = float(np.asarray(box[1], float)[1] - np.asarray(box[0], float)[1])
    return height / (count - (count - 1) * overlap)


def _tile_at(box: Box, top_mm: float, height_mm: float, out_shape_dhw: Sequence[int]) -> Box:
    lo, hi = (np.array(b, float) for b in box)
    lo[1], hi[1] = top_mm, top_mm + height_mm
    return widen_to_aspect((lo, hi), out_shape_dhw)


def tile_boxes(box: Box, count: int, overlap: float, out_shape_dhw: Sequence[int]) -> list[Box]:
    """``count`` boxes along the superior-inferior axis (h) that cover ``box`` together.

    Neighbours share ``overlap`` (a fraction) of a tile's height; each tile keeps the box's
    slices and anterior-posterior extent and is then widened to the output's aspect ratio
    (``widen_to_aspect``). One tile is the box itself, widened.

    Raises:
      ValueError: for fewer than one tile or an overlap outside [0, 1).
    """
    _check_tiles(count, overlap)
    height = tile_height(box, count, overlap)
    top = float(np.asarray(box[0], float)[1])
    return [
        _tile_at(box, top + k * height * (1.0 - overlap), height, out_shape_dhw)
        for k in range(count)
    ]


def _check_tiles(count: int, overlap: float) -> None:
    if count < 1 or not 0.0 <= overlap < 1.0:
        raise ValueError(f"Tiles: count {count} must be >= 1 and overlap {overlap} in [0, 1).")


def sliding_tiles(
    box: Box, count: int, overlap: float, step: float, out_shape_dhw: Sequence[int]
) -> tuple[list[Box], float]:
    """``tile_boxes``' tiles (their height), placed at most ``step`` of a tile apart.

    nnU-Net's sliding window (``tile_step_size``) along the spine: the tiles keep the height
    the network was trained on, the first and last stay flush with the box's ends, and as few
    tiles are taken as keep neighbours no further apart than ``step`` of a tile. With ``step``
    = 1 - ``overlap`` these are ``tile_boxes``' tiles; 0.5 (nnU-Net's default) puts four where
    three tiles share a quarter.

    Returns:
      (the tiles, how much neighbours overlap as a share of a tile's height before it is
      widened to the output's aspect ratio, as ``overlap`` is given).

    Raises:
      ValueError: for a step outside (0, 1] (and as ``tile_boxes``).
    """
    if not 0.0 < step <= 1.0:
        raise ValueError(f"Tiles: step {step} must be in (0, 1].")
    _check_tiles(count, overlap)
    height = tile_height(box, count, overlap)
    span = float(np.asarray(box[1], float)[1] - np.asarray(box[0], float)[1]) - height
    # The tolerance keeps float noise from adding a tile when step = 1 - overlap.
    intervals = max(math.ceil(span / (step * height) - 1e-6), 0)
    stride = span / intervals if intervals else 0.0
    top = float(np.asarray(box[0], float)[1])
    tiles = [_tile_at(box, top + k * stride, height, out_shape_dhw) for k in range(intervals + 1)]
    return tiles, (1.0 - stride / height) if intervals else 0.0


def check_box_scales(scales: Sequence[float], what: str) -> tuple[float, ...]:
    """``scales`` as a tuple of floats, checked for ``scaled_boxes``.

    Raises:
      ValueError: naming ``what``, for no scale or one that is not positive and finite.
    """
    values = tuple(float(s) for s in scales)
    if not values or not all(math.isfinite(s) and s > 0.0 for s in values):
        raise ValueError(
            f"{what} is {list(scales)}; it must hold at least one positive, finite scale."
        )
    return values


def scaled_boxes(boxes: Sequence[Box], scales: Sequence[float]) -> list[Box]:
    """Every box at every in-plane scale about its centre, all boxes at the first scale first.

    Multi-scale test-time augmentation: a scale above 1 shows the network more context at
    coarser voxels (the anatomy appears 1/scale its size); the slices (d) stay as they are.

    Raises:
      ValueError: as ``check_box_scales``.
    """
    factor_by_scale = [np.array([1.0, s, s]) for s in check_box_scales(scales, "Box scales")]
    out = []
    for factor in factor_by_scale:
        for lo, hi in boxes:
            lo, hi = np.asarray(lo, float), np.asarray(hi, float)
            centre, half = 0.5 * (lo + hi), 0.5 * (hi - lo) * factor
            out.append((centre - half, centre + half))
    return out


def random_tile(
    box: Box,
    count: int,
    overlap: float,
    out_shape_dhw: Sequence[int],
    rng: np.random.Generator,
) -> Box:
    """One of ``tile_boxes``' tiles, chosen at random; an inner tile moved by up to half the
    distance between neighbouring tiles.

    The end tiles stay flush with the box's ends, as the cascade's always are: there the
    crop's edge tells the network where the labelled spine stops (a tile drawn anywhere
    teaches it to label the unlabelled vertebra above the crop's top). The moved inner tiles
    show every stretch between at several places in the network's input.
    """
    tiles = tile_boxes(box, count, overlap, out_shape_dhw)
    if count == 1:
        return tiles[0]  # draws nothing: one-crop runs keep their random streams
    k = int(rng.integers(count))
    if k in (0, count - 1):
        return tiles[k]
    height = tile_height(box, count, overlap)
    stride = height * (1.0 - overlap)
    lo_h = float(np.asarray(box[0], float)[1])
    top = lo_h + (k + rng.uniform(-0.5, 0.5)) * stride
    return _tile_at(box, top, height, out_shape_dhw)


def crop_tiles(data) -> tuple[int, float]:
    """(count, overlap) of the tiles a structure crop is cut into: a config's ``data`` section
    (``crop_tiles``, ``crop_tile_overlap``); (1, 0) for runs saved before tiles existed."""
    count = int(data.get("crop_tiles", 1))
    overlap = float(data.get("crop_tile_overlap", 0.0))
    if count < 1 or not 0.0 <= overlap < 1.0:
        raise ValueError(
            f"config.data.crop_tiles is {count} and crop_tile_overlap {overlap}; the count "
            "must be >= 1 and the overlap in [0, 1)."
        )
    if count > 1 and data.crop == "image":
        raise ValueError("config.data.crop_tiles > 1 needs a structure crop ('label'/'coarse').")
    return count, overlap


def rotation_dhw(
    sagittal_rad: float = 0.0, about_si_rad: float = 0.0, about_ap_rad: float = 0.0
) -> np.ndarray:
    """Rotation matrix acting on (d, h, w) millimetre vectors.

    Args:
      sagittal_rad: in the sagittal (h, w) plane, i.e. about the left-right axis.
      about_si_rad: about the superior-inferior axis (tilts slices in the d-w plane).
      about_ap_rad: about the anterior-posterior axis (tilts slices in the d-h plane).
    """
    c, s = math.cos(sagittal_rad), math.sin(sagittal_rad)
    sagittal = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    c, s = math.cos(about_si_rad), math.sin(about_si_rad)
    about_si = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
    c, s = math.cos(about_ap_rad), math.sin(about_ap_rad)
    about_ap = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return sagittal @ about_si @ about_ap


def sampling_affine(
    box: Box,
    out_shape_dhw: Sequence[int],
    src_spacing_dhw: Sequence[float],
    rotate_rad: float = 0.0,
    translate_mm: Sequence[float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
    rotate_si_rad: float = 0.0,
    rotate_ap_rad: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, offset) mapping an output voxel index to a source voxel index.

    The output grid spans ``box``; it is rotated about the box centre (``rotate_rad`` in the
    sagittal (h, w) plane, the small out-of-plane angles about the superior-inferior and
    anterior-posterior axes), scaled and translated. All of it happens in mm, so anisotropic
    voxels rotate correctly, and it is one affine map, so a sample is interpolated once.

    Args:
      box: (low, high) corners in source mm.
      out_shape_dhw: the output grid's shape.
      src_spacing_dhw: the source volume's voxel size in mm.
      rotate_rad: rotation in the sagittal plane.
      translate_mm: shift of the grid's centre, in mm.
      scale: size of the sampled region relative to ``box``; above 1 zooms out (the anatomy
        looks smaller), below 1 zooms in.
      rotate_si_rad: rotation about the superior-inferior axis.
      rotate_ap_rad: rotation about the anterior-posterior axis.
    """
    lo, hi = (np.asarray(b, float) for b in box)
    out_spacing = (hi - lo) / np.asarray(out_shape_dhw, float)
    rotation = rotation_dhw(rotate_rad, rotate_si_rad, rotate_ap_rad) * scale
    to_src = np.diag(1.0 / np.asarray(src_spacing_dhw, float))
    matrix = to_src @ rotation @ np.diag(out_spacing)
    centre = (lo + hi) / 2 + np.asarray(translate_mm, float)
    offset = to_src @ (centre + rotation @ (0.5 * out_spacing - (hi - lo) / 2))
    return matrix, offset


def resample(
    volume_dhw: np.ndarray,
    affine: tuple[np.ndarray, np.ndarray],
    out_shape_dhw: Sequence[int],
    is_label: bool,
) -> np.ndarray:
    """Samples ``volume_dhw`` on the output grid (linear for images, nearest for labels)."""
    matrix, offset = affine
    return ndimage.affine_transform(
        volume_dhw,
        matrix,
        offset=offset,
        output_shape=tuple(out_shape_dhw),
        order=0 if is_label else 1,
        mode="constant",
        cval=0,
        prefilter=False,
    )


def bias_field(shape_dhw: Sequence[int], coefficients: Sequence[float], strength: float):
    """A smooth multiplicative field, ``exp`` of a low-order polynomial over the volume.

    Receive-coil shading varies slowly over the field of view; a quadratic in-plane and a
    linear left-right term cover it, evaluated by broadcasting (no full-size temporaries
    beyond the result).

    Args:
      shape_dhw: the volume's shape.
      coefficients: six polynomial weights (d, h, w, h*w, h^2, w^2), any scale.
      strength: the largest |log field|; the polynomial is normalised to it.

    Returns:
      float32 array of ``shape_dhw``, 1 where the field is neutral.
    """
    d, h, w = (np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape_dhw)
    d, h, w = d[:, None, None], h[None, :, None], w[None, None, :]
    c = np.asarray(coefficients, np.float32)
    log_field = c[0] * d + c[1] * h + c[2] * w + c[3] * h * w + c[4] * h * h + c[5] * w * w
    peak = float(np.abs(log_field).max())
    if peak == 0.0:
        return np.ones(tuple(shape_dhw), np.float32)
    return np.exp(log_field * np.float32(strength / peak))


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Stretches intensities about their mean by ``factor``, clipped to [0, 1] (nnU-Net)."""
    mean = image.mean()
    return np.clip((image - mean) * np.float32(factor) + mean, 0.0, 1.0)


def adjust_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """``image ** gamma`` on [0, 1] intensities: bends the mid-tones, keeps 0 and 1."""
    return np.power(np.clip(image, 0.0, 1.0), np.float32(gamma))
