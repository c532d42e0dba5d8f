"""Device augmentations: images drawn from tissue maps, and noise."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lumbar_jax.data.phantom import render, tissues
from lumbar_jax.training import augment
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def tissue_bdhw():
    """Two crops of a phantom's tissue map, as the pipeline would send them."""
    case = render.render_case(3, matrix=64)
    crop = case.tissue_dhw[:8, 16:48, 24:40]
    return jnp.asarray(np.stack([crop, crop[::-1]]))


def _draw(tissue_bdhw, seed, phantom_root):
    config = tiny_config(phantom_root)
    spacing = jnp.full((tissue_bdhw.shape[0], 3), 2.0, jnp.float32)
    ids = jnp.arange(tissue_bdhw.shape[0])
    draw = jax.jit(functools.partial(augment.synthesize, config=config.synthesis))
    return np.asarray(draw(tissue_bdhw, spacing, jax.random.key(seed), ids))


def test_synthesis_is_seeded_finite_and_in_range(tissue_bdhw, phantom_root):
    a = _draw(tissue_bdhw, 0, phantom_root)
    assert a.shape == (*tissue_bdhw.shape, 1) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, _draw(tissue_bdhw, 0, phantom_root))
    b = _draw(tissue_bdhw, 1, phantom_root)
    assert not np.allclose(a, b)


def test_two_seeds_give_different_contrasts(tissue_bdhw, phantom_root):
    """The median intensity of each tissue ranks differently under two draws."""
    ranks = []
    for seed in (0, 1, 2):
        image = _draw(tissue_bdhw, seed, phantom_root)[0, ..., 0]
        t = np.asarray(tissue_bdhw[0])
        present = [k for k in range(tissues.NUM_TISSUES) if (t == k).sum() > 20]
        medians = [np.median(image[t == k]) for k in present]
        ranks.append(tuple(np.argsort(medians)))
    assert len(set(ranks)) > 1


def test_each_sample_draws_alone(tissue_bdhw, phantom_root):
    """A sample's image depends on its index in the batch, not on the rest of the batch."""
    both = _draw(tissue_bdhw, 0, phantom_root)
    config = tiny_config(phantom_root)
    alone = augment.synthesize(
        tissue_bdhw[1:], jnp.full((1, 3), 2.0), jax.random.key(0), jnp.array([1]), config.synthesis
    )
    np.testing.assert_allclose(np.asarray(alone)[0], both[1], atol=1e-6)


def test_render_maps_a_fixed_contrast_as_asked():
    """Without blur, bias, noise or gamma a tissue map becomes its tissues' means, windowed."""
    tissue = jnp.asarray(np.repeat(np.arange(4, dtype=np.int32), 16).reshape(1, 8, 8))
    means = jnp.linspace(0.2, 0.8, tissues.NUM_TISSUES)
    p = {
        "means": means,
        "stds": jnp.zeros(tissues.NUM_TISSUES),
        "thickness": 0.0,
        "slice_spacing": 1.0,
        "phase": 0.0,
        "inplane": 0.0,
        "bias": jnp.zeros(augment.BIAS_GRID),
        "noise": 0.0,
        "top": 1.0,
        "gamma": 1.0,
        "invert": False,
    }
    image = augment.render(tissue, p, jnp.zeros((3, 1, 8, 8)), jnp.ones(3), (0, 0, 0))
    low, high = float(means[0]), float(means[3])
    np.testing.assert_allclose(image, (means[tissue] - low) / (high - low), atol=1e-5)
    inverted = augment.render(
        tissue, p | {"invert": True}, jnp.zeros((3, 1, 8, 8)), jnp.ones(3), (0, 0, 0)
    )
    np.testing.assert_allclose(inverted, 1 - image, atol=1e-6)
