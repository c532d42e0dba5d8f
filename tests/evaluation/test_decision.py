import numpy as np
import pytest

from lumbar_jax.evaluation import decision
from lumbar_jax.evaluation.evaluator import EvalCase
from lumbar_jax.inference import cascade


def _edge_case() -> decision.CachedCase:
    """A 10 x 10 x 10 body whose core (8 x 8 x 8 inside) the network is sure of and whose
    one-voxel rim it gives 0.4 against background 0.6; 200 background voxels at 0.3."""
    shape = (14, 14, 14)
    ref = np.zeros(shape, np.uint8)
    ref[2:12, 2:12, 2:12] = 1
    core = np.zeros(shape, bool)
    core[3:11, 3:11, 3:11] = True
    rim = (ref == 1) & ~core
    probs = np.zeros((6, *shape), np.float32)
    probs[0] = 1.0
    probs[0][core], probs[1][core] = 0.1, 0.9
    probs[0][rim], probs[1][rim] = 0.6, 0.4
    outside = np.argwhere(ref == 0)[:200]
    probs[0][tuple(outside.T)], probs[1][tuple(outside.T)] = 0.7, 0.3
    labeled = np.array([True, True, False, False, False, False])
    return decision.CachedCase("edge", probs.astype(np.float16), ref, (1.0, 1.0, 1.0), labeled)


def test_score_counts_dice_and_satisfactory_instances_of_a_decision():
    case = _edge_case()
    core, whole = 512, 1000
    plain = decision.score([case], 1.0)
    # The argmax keeps the core: recall 0.512, under the rule's 0.9.
    assert plain.dice_s[0] == pytest.approx(2 * core / (core + whole), abs=1e-6)
    assert (plain.satisfactory_s[0], plain.instances_s[0]) == (0, 1)
    assert np.isnan(plain.dice_s[1:]).all() and plain.instances_s[1:].sum() == 0
    # 0.4 / 0.6 beats the background from a scale of 2/3; 0.3 / 0.7 not above 3/7.
    grown = decision.score([case], [0.6, 1, 1, 1, 1])
    assert grown.dice_s[0] == pytest.approx(1.0) and grown.satisfactory_s[0] == 1
    leaky = decision.score([case], [0.4, 1, 1, 1, 1])
    assert leaky.dice_s[0] == pytest.approx(2 * whole / (2 * whole + 200), abs=1e-6)
    assert leaky.satisfactory_s[0] == 1  # precision 1000 / 1200 is above the rule's 0.5


def _trial(scale, dice, satisfactory):
    score = decision.Score(np.array([dice] * 5), np.array([satisfactory] * 5), np.full(5, 10))
    return decision.Trial(0, "vertebral_body", scale, (score, score))


def test_choose_takes_the_most_satisfactory_within_the_dice_tolerance():
    trials = [_trial(1.0, 0.90, 3), _trial(0.6, 0.895, 6), _trial(0.5, 0.892, 6)]
    trials.append(_trial(0.3, 0.85, 9))  # more satisfactory, but 0.05 under the best Dice
    assert decision.choose(trials, 0, tolerance=0.01).scale == 0.6  # tie: the higher Dice
    assert decision.choose(trials, 0, tolerance=0.1).scale == 0.3
    assert decision.choose(trials, 0, tolerance=0.0).scale == 1.0
    assert trials[1].satisfactory(0) == (12, 20)  # summed over the runs


def test_sweep_moves_the_swept_structures_and_holds_the_fixed_ones():
    case = _edge_case()
    logged = []
    chosen, trials = decision.sweep(
        [[case], [case]], [1.0, 0.6, 0.4], 0.01, fixed={3: 0.5}, rounds=1, log=logged.append
    )
    # Body: 0.6 reaches Dice 1 and the instance; no series labels the others: their start.
    assert chosen == (0.6, 0.8, 0.8, 0.5, 0.8)
    assert [t.scale for t in trials] == [1.0, 0.6, 0.4] and logged == trials
    assert {t.structure for t in trials} == {"vertebral_body"}
    with pytest.raises(ValueError, match=r"grid: background scales must be in"):
        decision.sweep([[case]], [1.5], 0.01)


def test_cache_keeps_what_the_cascade_decides_from():
    shape = (8, 32, 16)

    def probabilities(image_bdhwc):
        bright = (image_bdhwc[..., 0] > 0.5).astype(np.float32)
        zeros = np.zeros_like(bright)
        return np.stack([1 - bright, bright, zeros, zeros, zeros, zeros], axis=-1)

    stage = cascade.StageModel(shape, (2.0, 5.0, 5.0), (0.5, 99.5), probabilities)
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 5.0, (14, 90, 70))
    image[4:10, 30:60, 20:45] += 300.0
    reference = np.zeros(image.shape, np.uint8)
    reference[4:10, 30:60, 20:45] = 1
    case = EvalCase("box", image, reference, (4.0, 0.9, 1.1), np.ones(6, bool))
    (cached,) = decision.cache(stage, stage, [case])
    assert cached.probs_cdhw.dtype == np.float16 and cached.probs_cdhw.shape == (6, 14, 90, 70)
    labels = cascade.predict(stage, stage, image, case.spacing_dhw).labels_dhw
    assert np.array_equal(cascade.decide(cached.probs_cdhw.astype(np.float32)), labels)
