"""Augmentations drawn on the device inside the train step: noise, and images from tissues.

``synthesize`` draws a new image for every sample from its tissue map (SynthSeg-style domain
randomization: Billot et al., Medical Image Analysis 2023; TotalSpineSeg's augmentations): a
random mean and spread per tissue, a slice profile across slices up to ``max thickness`` mm
and an in-plane point spread, slice sampling with gaps, a smooth bias field, Rician noise, an
automatic window, gamma, and sometimes an inverted contrast. It runs here, inside the jitted
step, because there it is one gather and a few shifted sums per sample (2-3 % of a CPU step,
measured), while the host, which must feed GPUs, only resamples a uint8 map.

Every sample's draw is keyed by its index in the global batch, so results do not depend on
how the batch is split across devices, and a resumed run draws what the first would have.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lumbar_jax.data.phantom import tissues

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
# The coarse grid of the bias field (d, h, w), upsampled linearly (SynthSeg: ~4 nodes).
BIAS_GRID = (3, 5, 3)
_NUCLEUS, _INNER, _OUTER, _AIR = (
    tissues.ID[n] for n in ("nucleus", "inner_annulus", "outer_annulus", "air")
)


def add_noise(
    image_bdhwc: jnp.ndarray, rng: jax.Array, sample_ids_b: jnp.ndarray, prob: float, max_std: float
) -> jnp.ndarray:
    """Gaussian noise augmentation (paper), each sample keyed by its place in the batch."""

    def one(sample_id, image_dhwc):
        k_apply, k_std, k_noise = jax.random.split(jax.random.fold_in(rng, sample_id), 3)
        std = jnp.where(
            jax.random.uniform(k_apply) < prob, jax.random.uniform(k_std, maxval=max_std), 0.0
        )
        return image_dhwc + std * jax.random.normal(k_noise, image_dhwc.shape, image_dhwc.dtype)

    return jax.vmap(one)(sample_ids_b, image_bdhwc)


def draw_contrast(key: jax.Array, s: ml_collections.ConfigDict) -> dict[str, jnp.ndarray]:
    """One sample's random acquisition: per-tissue means and spreads, blur, bias, window."""
    k = jax.random.split(key, 18)
    n = tissues.NUM_TISSUES
    low, high = (jnp.asarray(tissues.MEAN_RANGE[:, i]) for i in (0, 1))
    prior = low + jax.random.uniform(k[0], (n,)) * (high - low)
    # Half the samples SynthSeg's way (any tissue any brightness), half within T2's ranges.
    means = jnp.where(
        jax.random.uniform(k[1]) < s.random_contrast_prob, jax.random.uniform(k[2], (n,)), prior
    )
    tied = (jax.random.uniform(k[3], (n,)) < s.tie_prob) & jnp.asarray(
        np.arange(n) != tissues.TIE_PARENT
    )
    factor = jax.random.uniform(k[4], (n,), minval=0.85, maxval=1.15)
    parent = jnp.asarray(tissues.TIE_PARENT)
    for _ in range(2):  # chains of ties are at most two deep
        means = jnp.where(tied, jnp.clip(means[parent] * factor, 0, 1), means)
    # The inner annulus lies between the outer annulus and the nucleus.
    between = jax.random.uniform(k[5], minval=0.2, maxval=0.8)
    means = means.at[_INNER].set(means[_OUTER] + between * (means[_NUCLEUS] - means[_OUTER]))
    means = means.at[_AIR].set(
        jnp.where(
            jax.random.uniform(k[6]) < 0.7, jax.random.uniform(k[7], maxval=0.06), means[_AIR]
        )
    )
    thickness = jax.random.uniform(k[8], minval=s.thickness_mm[0], maxval=s.thickness_mm[1])
    return {
        "means": means,
        "stds": jax.random.uniform(k[9], (n,), minval=s.std_range[0], maxval=s.std_range[1]),
        "thickness": thickness,
        "slice_spacing": thickness * jax.random.uniform(k[10], minval=1.0, maxval=s.max_gap),
        "phase": jax.random.uniform(k[11]),
        "inplane": jax.random.uniform(k[12], minval=s.inplane_mm[0], maxval=s.inplane_mm[1]),
        "bias": jax.random.normal(k[13], BIAS_GRID) * jax.random.uniform(k[14], maxval=s.bias_max),
        "noise": jax.random.uniform(k[15], maxval=s.noise_max),
        "top": jax.random.uniform(k[16], minval=s.window_top[0], maxval=s.window_top[1]),
        "gamma": jnp.exp(s.gamma_std * jax.random.normal(k[17])),
        "invert": jax.random.uniform(jax.random.fold_in(key, 1)) < s.invert_prob,
    }


def _blur(x: jnp.ndarray, sigma: jnp.ndarray, axis: int, radius: int) -> jnp.ndarray:
    """Gaussian along one axis as shifted sums (edges repeated); ``sigma`` may be traced."""
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * (taps / jnp.maximum(sigma, 1e-3)) ** 2)
    weights = weights / weights.sum()
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    padded = jnp.pad(x, pad, mode="edge")
    n = x.shape[axis]
    return sum(
        weights[i] * jax.lax.slice_in_dim(padded, i, i + n, axis=axis)
        for i in range(2 * radius + 1)
    )


def _along_d(x: jnp.ndarray, position: jnp.ndarray) -> jnp.ndarray:
    """``x`` linearly interpolated at fractional slice positions."""
    n = x.shape[0]
    position = jnp.clip(position, 0.0, n - 1.0)
    low = jnp.clip(jnp.floor(position).astype(jnp.int32), 0, max(n - 2, 0))
    t = (position - low)[:, None, None]
    return x[low] * (1 - t) + x[jnp.minimum(low + 1, n - 1)] * t


def _acquire_slices(x: jnp.ndarray, ratio: jnp.ndarray, phase: jnp.ndarray) -> jnp.ndarray:
    """Slices every ``ratio`` voxels along d, interpolated back (SynthSeg's MimicAcquisition)."""
    ratio = jnp.maximum(ratio, 1e-3)
    start = phase * ratio - ratio
    u = (jnp.arange(x.shape[0], dtype=jnp.float32) - start) / ratio
    j = jnp.floor(u)
    t = (u - j)[:, None, None]
    return _along_d(x, start + j * ratio) * (1 - t) + _along_d(x, start + (j + 1) * ratio) * t


def _interpolation_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear interpolation with the corners aligned."""
    if n_in == 1:
        return np.ones((n_out, 1), np.float32)
    position = np.linspace(0.0, n_in - 1.0, n_out)
    low = np.clip(np.floor(position).astype(int), 0, n_in - 2)
    t = position - low
    matrix = np.zeros((n_out, n_in), np.float32)
    matrix[np.arange(n_out), low] = 1 - t
    matrix[np.arange(n_out), low + 1] = t
    return matrix


def render(
    tissue_dhw: jnp.ndarray,
    p: dict[str, jnp.ndarray],
    normals_3dhw: jnp.ndarray,
    spacing_dhw: jnp.ndarray,
    radius_dhw: tuple[int, int, int] = (4, 2, 2),
) -> jnp.ndarray:
    """An image (d, h, w) in [0, 1] of a tissue map under one drawn contrast.

    Args:
      tissue_dhw: tissue ids on the network's grid.
      p: a ``draw_contrast`` result.
      normals_3dhw: standard normals for the texture and the two noise channels.
      spacing_dhw: the grid's voxel size in mm.
      radius_dhw: half widths of the blur kernels, in voxels.
    """
    x = p["means"][tissue_dhw] + p["stds"][tissue_dhw] * normals_3dhw[0]
    x = _blur(x, FWHM_TO_SIGMA * p["thickness"] / spacing_dhw[0], 0, radius_dhw[0])
    for axis in (1, 2):
        x = _blur(x, FWHM_TO_SIGMA * p["inplane"] / spacing_dhw[axis], axis, radius_dhw[axis])
    x = _acquire_slices(x, p["slice_spacing"] / spacing_dhw[0], p["phase"])
    md, mh, mw = (
        jnp.asarray(_interpolation_matrix(n, g)) for n, g in zip(x.shape, BIAS_GRID, strict=True)
    )
    log_bias = jnp.einsum("ai,bj,ck,ijk->abc", md, mh, mw, p["bias"])
    x = x * jnp.exp(log_bias)
    # The automatic window of the pipeline: from the darkest to (about) the brightest tissue
    # present, so that bright tissue saturates as under a percentile window.
    present = jnp.zeros(tissues.NUM_TISSUES, bool).at[tissue_dhw.ravel()].set(True)
    top = jnp.max(jnp.where(present, p["means"], -1.0)) * p["top"]
    bottom = jnp.minimum(jnp.min(jnp.where(present, p["means"], 2.0)), top - 0.05)
    sigma = p["noise"] * (top - bottom)
    x = jnp.sqrt((x + sigma * normals_3dhw[1]) ** 2 + (sigma * normals_3dhw[2]) ** 2)  # Rician
    x = jnp.clip((x - bottom) / (top - bottom), 0.0, 1.0) ** p["gamma"]
    return jnp.where(p["invert"], 1.0 - x, x).astype(jnp.float32)


def synthesize(
    tissue_bdhw: jnp.ndarray,
    spacing_b3: jnp.ndarray,
    rng: jax.Array,
    sample_ids_b: jnp.ndarray,
    config: ml_collections.ConfigDict,
) -> jnp.ndarray:
    """Images (b, d, h, w, 1) in [0, 1] drawn from tissue maps, one contrast per sample.

    Args:
      tissue_bdhw: tissue ids (``tissues.NAMES``) on the network's grid.
      spacing_b3: each sample's voxel size in mm.
      rng: the step's key.
      sample_ids_b: each sample's index in the global batch (keys its draw).
      config: ``config.synthesis`` (the ranges of every draw).
    """

    def one(sample_id, tissue_dhw, spacing):
        key = jax.random.fold_in(rng, sample_id)
        k_contrast, k_normals = jax.random.split(key)
        p = draw_contrast(k_contrast, config)
        normals = jax.random.normal(k_normals, (3, *tissue_dhw.shape), jnp.float32)
        return render(tissue_dhw.astype(jnp.int32), p, normals, spacing)

    return jax.vmap(one)(sample_ids_b, tissue_bdhw, spacing_b3)[..., None]
