import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lumbar_jax.training import losses


def _batch(seed=0, shape=(2, 3, 4, 5), classes=4):
    k1, k2 = jax.random.split(jax.random.key(seed))
    logits = jax.random.normal(k1, (*shape, classes))
    label = jax.random.randint(k2, shape, 0, classes)
    return logits, label


def test_cross_entropy_equals_standard_when_all_labelled():
    logits, label = _batch()
    labeled = jnp.ones((2, 4), bool)
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, label).mean()
    np.testing.assert_allclose(
        losses.marginal_cross_entropy(logits, label, labeled), expected, rtol=1e-6
    )


def test_unlabelled_class_merges_into_background():
    logits, label = _batch(classes=3)
    label = jnp.where(label == 2, 0, label)  # class 2 is not labelled: its voxels read 0
    labeled = jnp.array([[True, True, False]] * 2)
    # Moving probability mass between background and the unlabelled class changes nothing.
    swapped = logits.at[..., 0].set(logits[..., 2]).at[..., 2].set(logits[..., 0])
    a = losses.marginal_cross_entropy(logits, label, labeled)
    b = losses.marginal_cross_entropy(swapped, label, labeled)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.isclose(a, losses.marginal_cross_entropy(logits, label, jnp.ones((2, 3), bool)))


def test_soft_dice_perfect_and_wrong():
    label = jnp.array([[[[0, 1, 2, 1]]]])
    perfect = jax.nn.one_hot(label, 3) * 100.0
    labeled = jnp.ones((1, 3), bool)
    assert losses.soft_dice_loss(perfect, label, labeled) == pytest.approx(0.0, abs=1e-4)
    wrong = jax.nn.one_hot(jnp.zeros_like(label), 3) * 100.0
    assert losses.soft_dice_loss(wrong, label, labeled) == pytest.approx(1.0, abs=1e-4)
    # Only labelled foreground classes count: class 2 is missed but not labelled.
    half = perfect.at[0, 0, 0, 2].set(jax.nn.one_hot(0, 3) * 100.0)
    only_1 = jnp.array([[True, True, False]])
    assert losses.soft_dice_loss(half, label, only_1) == pytest.approx(0.0, abs=1e-4)


def test_segmentation_loss_weights():
    logits, label = _batch()
    labeled = jnp.ones((2, 4), bool)
    total, parts = losses.segmentation_loss(logits, label, labeled, ce_weight=2.0, dice_weight=0.5)
    np.testing.assert_allclose(total, 2.0 * parts["ce"] + 0.5 * parts["dice_loss"], rtol=1e-6)


def test_class_weights_scale_each_voxels_cross_entropy():
    logits, label = _batch(classes=3)
    labeled = jnp.ones((2, 3), bool)
    per_voxel = optax.softmax_cross_entropy_with_integer_labels(logits, label)
    weights = jnp.array([1.0, 2.0, 5.0])
    expected = jnp.mean(per_voxel * weights[label])  # a mean over voxels, not over weights
    got = losses.marginal_cross_entropy(logits, label, labeled, weights)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    ones = losses.marginal_cross_entropy(logits, label, labeled, jnp.ones(3))
    np.testing.assert_allclose(ones, losses.marginal_cross_entropy(logits, label, labeled))


def test_class_weights_of_unlabelled_voxels_are_the_backgrounds():
    logits, label = _batch(classes=3)
    label = jnp.where(label == 2, 0, label)
    labeled = jnp.array([[True, True, False]] * 2)
    weighted = losses.marginal_cross_entropy(logits, label, labeled, jnp.array([1.0, 1.0, 9.0]))
    np.testing.assert_allclose(weighted, losses.marginal_cross_entropy(logits, label, labeled))


def test_downsampled_labels_take_each_blocks_middle_voxel():
    label = jnp.arange(2 * 4 * 4 * 4).reshape(2, 4, 4, 4)
    small = losses.downsample_labels(label, (1, 2, 4))
    assert small.shape == (2, 4, 2, 1)
    assert int(small[0, 0, 0, 0]) == int(label[0, 0, 1, 2])
    assert int(small[1, 3, 1, 0]) == int(label[1, 3, 3, 2])


def test_multiscale_loss_weights_halve_per_level():
    assert losses.deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    logits, label = _batch(shape=(2, 4, 4, 4), classes=3)
    labeled = jnp.ones((2, 3), bool)
    coarse_logits = logits[:, :, ::2, ::2]  # any logits of the coarser grid's shape
    total, parts = losses.multiscale_loss([logits, coarse_logits], label, labeled, ((1, 2, 2),))
    full, _ = losses.segmentation_loss(logits, label, labeled)
    coarse, _ = losses.segmentation_loss(
        coarse_logits, losses.downsample_labels(label, (1, 2, 2)), labeled
    )
    np.testing.assert_allclose(total, 2 / 3 * full + 1 / 3 * coarse, rtol=1e-6)
    np.testing.assert_allclose(parts["ce"], losses.marginal_cross_entropy(logits, label, labeled))
