import numpy as np

from lumbar_jax.evaluation import satisfaction

BODY, DISC, CANAL = 1, 2, 4


def _spine():
    """Three discs stacked along h with bodies between, and a canal on slices 3..5."""
    ref = np.zeros((8, 60, 20), np.uint8)
    for k in range(3):
        ref[2:6, 5 + 18 * k : 15 + 18 * k, 4:12] = BODY
        ref[2:6, 15 + 18 * k : 20 + 18 * k, 4:12] = DISC
    ref[3:6, 2:58, 14:17] = CANAL
    return ref


def test_perfect_prediction_counts_every_instance():
    ref = _spine()
    found = satisfaction.instances(ref, ref, (4.0, 1.0, 1.0))
    rates = satisfaction.rates(found)
    assert rates["vertebral_body"] == (3, 3)
    assert rates["intervertebral_disc"] == (3, 3)
    assert rates["spinal_canal"] == (3, 3)  # per sagittal slice
    assert rates["intervertebral_foramen"] == (0, 0)


def test_partly_missed_disc_is_not_satisfactory():
    ref = _spine()
    pred = ref.copy()
    pred[2:6, 15:17, 4:12] = 0  # 2 of the first disc's 5 rows missed: 60 % found
    found = satisfaction.instances(pred, ref, (4.0, 1.0, 1.0))
    discs = [i for i in found if i.structure == "intervertebral_disc"]
    assert [i.satisfactory for i in discs] == [False, True, True]
    assert discs[0].recall == 0.6
    assert satisfaction.rates(found)["intervertebral_disc"] == (2, 3)


def test_leak_fails_on_precision():
    ref = _spine()
    pred = ref.copy()
    pred[2:6, 5:15, 4:12] = DISC  # the first body predicted as disc: a disc twice too big
    found = satisfaction.instances(pred, ref, (4.0, 1.0, 1.0))
    first = next(i for i in found if i.structure == "intervertebral_disc")
    assert first.recall == 1.0 and first.precision < 0.5 and not first.satisfactory


def test_unlabelled_structures_are_skipped():
    ref = _spine()
    labeled = np.array([True, False, True, False, False, False])
    found = satisfaction.instances(ref, ref, (4.0, 1.0, 1.0), labeled)
    assert {i.structure for i in found} == {"intervertebral_disc"}
