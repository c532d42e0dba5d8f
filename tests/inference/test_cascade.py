import dataclasses

import numpy as np
import pytest

from lumbar_jax.inference import cascade


def _threshold_stage(shape, margin=(2.0, 5.0, 5.0)) -> cascade.StageModel:
    """A 'network' that labels voxels brighter than 0.5 as class 1 (of 3)."""

    def probabilities(image_bdhwc: np.ndarray) -> np.ndarray:
        assert image_bdhwc.shape[1:] == (*shape, 1) and image_bdhwc.dtype == np.float32
        bright = (image_bdhwc[..., 0] > 0.5).astype(np.float32)
        return np.stack([1 - bright, bright, np.zeros_like(bright)], axis=-1)

    return cascade.StageModel(shape, margin, (0.5, 99.5), probabilities)


def _volume_with_box(shape=(14, 90, 70), box=(slice(4, 10), slice(30, 60), slice(20, 45))):
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 5.0, shape)
    image[box] += 300.0
    truth = np.zeros(shape, np.uint8)
    truth[box] = 1
    return image, truth


def _dice(a, b):
    return 2 * np.sum(a & b) / (np.sum(a) + np.sum(b))


@pytest.mark.parametrize("flip_lr", [False, True])
def test_cascade_maps_predictions_back_onto_the_series_grid(flip_lr):
    image, truth = _volume_with_box()
    spacing = (4.0, 0.9, 1.1)
    result = cascade.predict(
        _threshold_stage((8, 32, 16)),
        _threshold_stage((8, 48, 32)),
        image,
        spacing,
        flip_lr=flip_lr,
    )
    assert result.labels_dhw.shape == image.shape and result.labels_dhw.dtype == np.uint8
    # Both stages see the bright box through a resampling and back; only edge voxels differ.
    assert _dice(result.coarse_labels_dhw == 1, truth == 1) > 0.85
    assert _dice(result.labels_dhw == 1, truth == 1) > 0.95
    # The fine crop holds the coarse result plus the margin, and no more than needed.
    lo, hi = result.fine_box_mm
    where = np.argwhere(truth)
    assert np.all(lo <= where.min(0) * spacing) and np.all(hi >= where.max(0) * spacing)
    assert hi[0] - lo[0] < (where.max(0)[0] - where.min(0)[0] + 4) * spacing[0] + 2 * 2.0 + 1e-6
    assert set(result.seconds) == {"coarse", "fine", "total"}


def test_outside_the_fine_crop_is_background():
    image, truth = _volume_with_box()
    image[12:, :5, :5] += 300.0  # a bright corner the coarse stage will see

    def only_centre(image_bdhwc):
        # Coarse: labels only the big box (ignores the small corner), via its position.
        probs = _threshold_stage((8, 32, 16)).probabilities(image_bdhwc)
        probs[:, :, :4] = [1.0, 0.0, 0.0]
        return probs

    coarse = cascade.StageModel((8, 32, 16), (2.0, 5.0, 5.0), (0.5, 99.5), only_centre)
    result = cascade.predict(coarse, _threshold_stage((8, 48, 32)), image, (4.0, 0.9, 1.1))
    assert not result.labels_dhw[12:, :5, :5].any()  # outside the crop: background
    assert _dice(result.labels_dhw == 1, truth == 1) > 0.95


def test_constant_image_is_a_clear_error():
    stage = _threshold_stage((8, 32, 16))
    with pytest.raises(ValueError, match=r"scan\.nii\.gz: image is constant"):
        cascade.predict(stage, stage, np.ones((5, 20, 20)), (1, 1, 1), source="scan.nii.gz")


def test_decide_scales_the_background_before_the_argmax():
    # (classes, voxels): background 0.55 against a structure at 0.45 / 0.40 / 0.30.
    probs = np.array([[0.55, 0.55, 0.55, 0.2], [0.45, 0.40, 0.30, 0.1], [0.0, 0.05, 0.15, 0.7]])
    probs = probs[:, :, None, None]
    assert cascade.decide(probs).ravel().tolist() == [0, 0, 0, 2]
    # s = 0.8: a structure wins above s / (1 + s) = 0.444 against background alone.
    assert cascade.decide(probs, 0.8).ravel().tolist() == [1, 0, 0, 2]
    assert cascade.decide(probs, 0.5).ravel().tolist() == [1, 1, 1, 2]
    assert probs[0, 0, 0, 0] == 0.55  # the input is left alone


def test_decide_divides_each_structure_by_its_own_scale():
    # (classes, voxels): background, body, disc, foramen, canal, cord.
    probs = np.zeros((6, 5))
    probs[:, 0] = [0.60, 0.40, 0.0, 0.0, 0.0, 0.0]  # body: 0.40 / 0.5 = 0.8 > 0.6
    probs[:, 1] = [0.60, 0.0, 0.40, 0.0, 0.0, 0.0]  # disc: 0.40 / 0.8 = 0.5 < 0.6
    probs[:, 2] = [0.20, 0.0, 0.0, 0.0, 0.45, 0.35]  # canal 0.45 / 0.8 < cord 0.35 / 0.5
    probs[:, 3] = [0.10, 0.50, 0.40, 0.0, 0.0, 0.0]  # body 1.0 against disc 0.5
    probs[:, 4] = [0.50, 0.0, 0.0, 0.0, 0.40, 0.0]  # tie (0.40 / 0.8 = 0.5): background
    probs = probs[:, :, None, None]
    scales = (0.5, 0.8, 1.0, 0.8, 0.5)
    assert cascade.decide(probs, scales).ravel().tolist() == [1, 0, 5, 1, 0]
    # Five equal scales decide as one scale does, and all ones as the plain argmax.
    assert np.array_equal(cascade.decide(probs, (0.8,) * 5), cascade.decide(probs, 0.8))
    assert np.array_equal(cascade.decide(probs, [1.0] * 5), np.argmax(probs, axis=0))


def test_background_scales_are_one_for_all_or_one_per_structure():
    assert cascade.check_background_scale(0.8, "x") == (0.8,) * 5
    assert cascade.check_background_scale([0.8], "x") == (0.8,) * 5
    assert cascade.check_background_scale((0.4, 0.5, 1, 0.6, 0.3), "x") == (0.4, 0.5, 1.0, 0.6, 0.3)
    with pytest.raises(ValueError, match=r"config\.x: 3 background scales; give one for every"):
        cascade.check_background_scale((0.5, 0.5, 0.5), "config.x")
    with pytest.raises(ValueError, match=r"config\.x: background scales must be in .* \[0\.0\]"):
        cascade.check_background_scale((0.5, 0.5, 0.0, 0.5, 0.5), "config.x")


def test_the_fine_stage_decision_is_applied_on_the_series_grid():
    image, truth = _volume_with_box()
    soft = _threshold_stage((8, 48, 32))

    def unsure(image_bdhwc):  # the box at probability 0.45 only
        probs = soft.probabilities(image_bdhwc)
        return probs * [1.0, 0.45, 0.0] + probs[..., 1:2] * [0.55, 0.0, 0.0]

    coarse = _threshold_stage((8, 32, 16))
    for scale, min_share in ((1.0, 0.0), (0.8, 0.5)):
        fine = cascade.StageModel((8, 48, 32), (2.0, 5.0, 5.0), (0.5, 99.5), unsure, scale)
        labels = cascade.predict(coarse, fine, image, (4.0, 0.9, 1.1)).labels_dhw
        # Where the box's edge blends with the background outside, the background wins.
        assert not np.any((labels == 1) & (truth == 0))
        assert (np.sum(labels == 1) > min_share * truth.sum()) == (scale < 1.0)


def test_a_loaded_cascade_takes_another_background_scale():
    from lumbar_jax.inference import backends

    stage = _threshold_stage((8, 32, 16))
    loaded = backends.LoadedCascade(stage, stage, "jax", {})
    assert loaded.with_background_scale(None) is loaded  # the fine run's own
    other = loaded.with_background_scale([0.7])
    assert other.fine.background_scale == (0.7,) * 5
    assert other.coarse.background_scale == (1.0,) * 5
    assert loaded.fine.background_scale == (1.0,) * 5  # the original is left alone
    each = loaded.with_background_scale([0.4, 0.5, 1.0, 0.6, 0.3])
    assert each.fine.background_scale == (0.4, 0.5, 1.0, 0.6, 0.3)
    for bad in ([0.0], [1.5], [0.5, 0.5, 0.5, 0.5, 2.0]):
        with pytest.raises(ValueError, match=r"background scales must be in \(0, 1\]"):
            loaded.with_background_scale(bad)
    with pytest.raises(ValueError, match="background_scale: 2 background scales; give one"):
        loaded.with_background_scale([0.5, 0.5])


def test_a_loaded_cascade_takes_another_tile_step():
    from lumbar_jax.inference import backends

    stage = _threshold_stage((8, 32, 16))
    loaded = backends.LoadedCascade(stage, stage, "jax", {})
    assert loaded.with_tile_step(None) is loaded and loaded.with_flip_tta(None) is loaded
    assert loaded.with_flip_tta(True).fine.flip_tta and not loaded.fine.flip_tta
    assert not loaded.with_flip_tta(True).with_flip_tta(False).fine.flip_tta  # --noflip_tta
    assert loaded.with_tile_step(0.0).fine.tile_step == 0.0  # as in training
    assert loaded.with_tile_step(0.5).fine.tile_step == 0.5 and loaded.fine.tile_step == 0.0
    for bad in (-0.5, 1.5):
        with pytest.raises(ValueError, match="tile_step must be in"):
            loaded.with_tile_step(bad)


def _counted_tiled_fine(overlap: float) -> tuple[cascade.StageModel, list[int]]:
    """A fine stage in three tiles that records the batch size of each call."""
    calls = []

    def counted(image_bdhwc):
        calls.append(image_bdhwc.shape[0])
        return _threshold_stage((8, 24, 32)).probabilities(image_bdhwc)

    fine = dataclasses.replace(
        _threshold_stage((8, 24, 32)), crop_tiles=3, crop_tile_overlap=overlap
    )
    return dataclasses.replace(fine, probabilities=counted), calls


def test_a_finer_tile_step_predicts_more_tiles_and_the_same_structure():
    image, truth = _volume_with_box()
    fine, calls = _counted_tiled_fine(0.25)
    coarse_calls = []

    def coarse_counted(image_bdhwc):
        coarse_calls.append(image_bdhwc.shape[0])
        return _threshold_stage((8, 32, 16)).probabilities(image_bdhwc)

    coarse = dataclasses.replace(_threshold_stage((8, 32, 16)), probabilities=coarse_counted)
    trained = cascade.predict(coarse, fine, image, (4.0, 0.9, 1.1))
    finer = cascade.predict(
        coarse, dataclasses.replace(fine, tile_step=0.5), image, (4.0, 0.9, 1.1)
    )
    assert calls == [3, 4]  # three tiles a quarter shared, four half a tile apart
    np.testing.assert_allclose(finer.fine_box_mm, trained.fine_box_mm)
    assert _dice(finer.labels_dhw == 1, truth == 1) > 0.95
    # A fine stage that flips by default runs each tile mirrored too, unless told not to.
    flipping = dataclasses.replace(fine, tile_step=0.5, flip_tta=True)
    flipped = cascade.predict(coarse, flipping, image, (4.0, 0.9, 1.1))
    cascade.predict(coarse, flipping, image, (4.0, 0.9, 1.1), flip_lr=False)
    assert calls[2:] == [8, 4]
    assert coarse_calls == [1, 1, 2, 1]  # the coarse stage flips with the fine stage's setting
    assert _dice(flipped.labels_dhw == 1, truth == 1) > 0.95


def test_box_scales_predict_each_tile_at_each_scale_and_the_same_structure():
    image, truth = _volume_with_box()
    fine, calls = _counted_tiled_fine(0.25)
    spacing = (4.0, 0.9, 1.1)
    plain = cascade.predict(_threshold_stage((8, 32, 16)), fine, image, spacing)
    scaled_fine = dataclasses.replace(fine, box_scales=(1.0, 1.1, 1.2))
    scaled = cascade.predict(_threshold_stage((8, 32, 16)), scaled_fine, image, spacing)
    assert calls == [3, 9]  # three tiles, then each at three scales, in one batch
    assert _dice(scaled.labels_dhw == 1, truth == 1) > 0.95
    # The crop (all the boxes) grows by the largest scale in-plane, about the same centre.
    (lo, hi), (scaled_lo, scaled_hi) = plain.fine_box_mm, scaled.fine_box_mm
    np.testing.assert_allclose(scaled_lo + scaled_hi, lo + hi, atol=1e-6)
    np.testing.assert_allclose([scaled_lo[0], scaled_hi[0]], [lo[0], hi[0]])  # same slices
    assert np.all((scaled_hi - scaled_lo)[1:] > (hi - lo)[1:])
    boxes, _ = cascade.fine_boxes(scaled_fine, plain.coarse_labels_dhw, spacing)
    first, _ = cascade.fine_boxes(fine, plain.coarse_labels_dhw, spacing)
    np.testing.assert_allclose(boxes[:3], first)  # the tiles themselves come first


def test_a_loaded_cascade_takes_other_box_scales():
    from lumbar_jax.inference import backends

    stage = _threshold_stage((8, 32, 16))
    loaded = backends.LoadedCascade(stage, stage, "jax", {})
    assert loaded.with_box_scales(None) is loaded and loaded.fine.box_scales == (1.0,)
    other = loaded.with_box_scales([1, 1.1])
    assert other.fine.box_scales == (1.0, 1.1) and other.coarse.box_scales == (1.0,)
    for bad in ([], [1.0, 0.0]):
        with pytest.raises(ValueError, match="box_scales is"):
            loaded.with_box_scales(bad)


def test_a_tiled_fine_stage_covers_the_crop_and_maps_back():
    image, truth = _volume_with_box()
    fine, calls = _counted_tiled_fine(0.3)
    result = cascade.predict(_threshold_stage((8, 32, 16)), fine, image, (4.0, 0.9, 1.1))
    assert calls == [3]  # the three tiles in one batch
    assert _dice(result.labels_dhw == 1, truth == 1) > 0.95
    lo, hi = result.fine_box_mm
    where = np.argwhere(truth) * np.asarray((4.0, 0.9, 1.1))
    assert np.all(lo <= where.min(0)) and np.all(hi >= where.max(0))


def test_tiles_blend_toward_the_tile_whose_middle_is_nearer():
    # Tile k says "class k + 1" everywhere: across an overlap the label changes from one
    # tile's class to the next's, near the overlap's middle, not at a tile's edge.
    shape = (4, 100, 20)
    spacing = (1.0, 1.0, 1.0)

    def tile_class(image_bdhwc):
        probs = np.zeros((*image_bdhwc.shape[:-1], 3), np.float32)
        for k in range(image_bdhwc.shape[0]):
            probs[k, ..., k + 1] = 1.0
        return probs

    stage = cascade.StageModel((4, 20, 20), (0.0, 0.0, 0.0), (0.5, 99.5), tile_class)
    box = (np.array([-0.5, -0.5, -0.5]), np.array([3.5, 99.5, 19.5]))
    tiles = cascade.transforms.tile_boxes(box, 2, 0.4, (4, 20, 20))
    probs = cascade._stage_probabilities(stage, np.zeros(shape), spacing, tiles, False, 0.4)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    # Within half a network voxel (3.1 mm) of the crop's ends the network's outermost voxel
    # centres are blended with background, as for any crop; away from them:
    labels = np.argmax(probs, axis=0)[2, 5:95, 10]
    # Tiles of 62.5 mm: the first ends at 62, the second starts at 37; overlap middle ~50.
    switch = int(np.flatnonzero(labels == 2)[0])
    assert np.all(labels[:switch] == 1) and np.all(labels[switch:] == 2)
    assert 45 <= 5 + switch <= 55


def test_a_run_config_gives_one_background_scale_per_structure():
    import ml_collections

    from lumbar_jax.inference import jax_stage

    config = ml_collections.ConfigDict({"inference": {"background_scale": 0.8}})
    assert jax_stage.background_scale_of(config) == (0.8,) * 5  # runs saved with one number
    assert jax_stage.background_scale_of(ml_collections.ConfigDict()) == (1.0,) * 5
    config = ml_collections.ConfigDict({"inference": {"background_scale": (0.5, 0.5)}})
    with pytest.raises(ValueError, match=r"config\.inference\.background_scale: 2 background"):
        jax_stage.background_scale_of(config)
