import numpy as np
import pytest

from lumbar_jax.evaluation import metrics

C = 3  # background + two structures


def _maps(pred_voxels, ref_voxels, cls=1, shape=(2, 3, 4)):
    pred, ref = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    for v in pred_voxels:
        pred[v] = cls
    for v in ref_voxels:
        ref[v] = cls
    return pred, ref


def test_identical_is_one():
    pred, ref = _maps([(0, 0, 0), (1, 2, 3)], [(0, 0, 0), (1, 2, 3)])
    assert metrics.dice_per_class(pred, ref, C)[0] == 1.0


def test_disjoint_is_zero():
    pred, ref = _maps([(0, 0, 0)], [(1, 1, 1)])
    assert metrics.dice_per_class(pred, ref, C)[0] == 0.0


def test_partial_overlap_by_hand():
    # |P| = 2, |R| = 3, |P & R| = 1: Dice = 2 * 1 / (2 + 3) = 0.4
    pred, ref = _maps([(0, 0, 0), (0, 0, 1)], [(0, 0, 0), (1, 0, 0), (1, 1, 0)])
    assert metrics.dice_per_class(pred, ref, C)[0] == pytest.approx(0.4)


def test_both_empty_is_nan_and_one_empty_is_zero():
    pred, ref = _maps([], [])
    assert np.isnan(metrics.dice_per_class(pred, ref, C)).all()
    pred, ref = _maps([(0, 0, 0)], [])
    assert metrics.dice_per_class(pred, ref, C)[0] == 0.0
    pred, ref = _maps([], [(0, 0, 0)])
    assert metrics.dice_per_class(pred, ref, C)[0] == 0.0


def test_classes_are_separate_and_unlabelled_is_nan():
    pred = np.array([[[1, 1, 2, 2]]])
    ref = np.array([[[1, 2, 2, 2]]])
    dice = metrics.dice_per_class(pred, ref, C)
    np.testing.assert_allclose(dice, [2 * 1 / 3, 2 * 2 / 5])
    dice = metrics.dice_per_class(pred, ref, C, labeled_c=np.array([True, False, True]))
    assert np.isnan(dice[0]) and dice[1] == pytest.approx(0.8)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        metrics.dice_per_class(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)), C)


def test_summarize_ignores_nan():
    s = metrics.summarize(np.array([[0.5, np.nan], [0.7, np.nan], [np.nan, np.nan]]))
    assert s["mean"][0] == pytest.approx(0.6)
    assert (s["min"][0], s["max"][0], s["count"][0]) == (0.5, 0.7, 2)
    assert np.isnan(s["mean"][1]) and s["count"][1] == 0
