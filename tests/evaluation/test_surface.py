import math

import numpy as np
import pytest
from scipy import ndimage, spatial

from lumbar_jax.evaluation import surface


def _cube(shape, lo, size):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, a + size) for a in lo)] = True
    return mask


def _sphere(shape, centre, radius, spacing):
    grid = np.indices(shape).astype(float)
    r2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing, strict=True))
    return r2 <= radius**2


def _brute_force(pred, ref, spacing):
    """Directed surface distances by nearest neighbours between surface point clouds."""
    faces = ndimage.generate_binary_structure(3, 1)

    def points(mask):
        edge = mask & ~ndimage.binary_erosion(mask, faces, border_value=0)
        return np.argwhere(edge) * np.asarray(spacing)

    a, b = points(pred), points(ref)
    return spatial.cKDTree(b).query(a)[0], spatial.cKDTree(a).query(b)[0]


def test_identical_masks_are_zero():
    mask = _sphere((20, 20, 20), (10, 10, 10), 6, (1, 1, 1))
    assert surface.hd95_assd(mask, mask, (1.0, 1.0, 1.0)) == (0.0, 0.0)


@pytest.mark.parametrize(("axis", "spacing"), [(0, (4.0, 1.0, 1.0)), (2, (1.0, 0.5, 0.7))])
def test_shifted_cube_has_the_shift_as_its_largest_distance(axis, spacing):
    shift = 3
    lo = [4, 4, 4]
    ref = _cube((20, 20, 20), lo, 8)
    lo[axis] += shift
    pred = _cube((20, 20, 20), lo, 8)
    a, b = surface.surface_distances(pred, ref, spacing)
    assert max(a.max(), b.max()) == pytest.approx(shift * spacing[axis])
    hd95, assd = surface.hd95_assd(pred, ref, spacing)
    assert 0 < assd < hd95 <= shift * spacing[axis] + 1e-9


def test_concentric_spheres_are_their_radius_difference_apart():
    spacing = (1.0, 1.0, 1.0)
    inner = _sphere((40, 40, 40), (20, 20, 20), 8, spacing)
    outer = _sphere((40, 40, 40), (20, 20, 20), 13, spacing)
    hd95, assd = surface.hd95_assd(inner, outer, spacing)
    # Voxelised spheres: within a voxel of the continuous answer (5 mm).
    assert hd95 == pytest.approx(5.0, abs=1.0)
    assert assd == pytest.approx(5.0, abs=1.0)


def test_matches_brute_force_on_random_blobs():
    rng = np.random.default_rng(3)
    spacing = (3.0, 0.8, 1.2)
    for _ in range(5):
        pred = ndimage.binary_opening(rng.random((12, 30, 25)) > 0.55)
        ref = ndimage.binary_opening(rng.random((12, 30, 25)) > 0.55)
        got = surface.surface_distances(pred, ref, spacing)
        want = _brute_force(pred, ref, spacing)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(np.sort(g), np.sort(w), rtol=1e-9)
        hd95, assd = surface.hd95_assd(pred, ref, spacing)
        assert hd95 == pytest.approx(max(np.percentile(w, 95) for w in want))
        assert assd == pytest.approx(np.concatenate(want).mean())


def test_empty_masks():
    mask = _cube((10, 10, 10), (2, 2, 2), 4)
    empty = np.zeros_like(mask)
    assert all(math.isnan(v) for v in surface.hd95_assd(empty, empty, (1, 1, 1)))
    assert surface.hd95_assd(empty, mask, (1, 1, 1)) == (math.inf, math.inf)
    assert surface.hd95_assd(mask, empty, (1, 1, 1)) == (math.inf, math.inf)


def test_per_class_skips_unlabelled_classes():
    ref = np.zeros((10, 10, 10), np.uint8)
    ref[2:5, 2:5, 2:5] = 1
    ref[6:9, 6:9, 6:9] = 2
    hd95, assd = surface.per_class(ref, ref, (1, 1, 1), 4, np.array([True, True, False, True]))
    assert hd95[0] == 0 and math.isnan(hd95[1]) and math.isnan(hd95[2])  # 3: absent in both
    assert assd[0] == 0
