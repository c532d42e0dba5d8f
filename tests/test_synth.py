import json

import numpy as np

from lumbar_jax import LABEL_NAMES
from lumbar_jax.data import datasets, io, phantom, synth


def test_render_is_deterministic_and_has_every_structure():
    image, label, acq = synth.render_case(3, matrix=128)
    again, label_again, _ = synth.render_case(3, matrix=128)
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(label, label_again)
    assert image.shape == label.shape == (acq.num_slices, 128, 128)
    assert 12 <= acq.num_slices <= 20
    assert 3.5 <= acq.slice_thickness <= 5.0
    assert acq.slice_thickness < acq.slice_spacing <= 5.5  # slices have gaps
    counts = np.bincount(label.ravel(), minlength=6)
    assert (counts[1:] > 0).all(), counts
    # T2 contrast on the mid-sagittal slice: bright CSF around a dark cord, discs with a
    # nucleus brighter than any part of the vertebral bodies.
    mid = acq.num_slices // 2
    pick = [image[mid][label[mid] == k] for k in range(6)]
    assert np.median(pick[phantom.CANAL]) > 2 * np.median(pick[phantom.CORD])
    assert np.median(pick[phantom.CANAL]) > np.median(pick[phantom.BODY])
    assert np.percentile(pick[phantom.DISC], 90) > np.percentile(pick[phantom.BODY], 90)
    # Foramina only off the midline.
    assert (label[mid] == phantom.FORAMEN).sum() == 0
    assert (label[mid - 1 : mid + 2] == phantom.CANAL).sum() > 0
    assert not np.array_equal(image, synth.render_case(4, matrix=128)[0])


def test_write_dataset_layout(tmp_path):
    root = synth.write_dataset(tmp_path / "ds", num_cases=3, seed=1, matrix=48)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["labels"] == {name: i for i, name in enumerate(LABEL_NAMES)}
    assert sorted(i for ids in meta["split"].values() for i in ids) == [
        "phantom_000",
        "phantom_001",
        "phantom_002",
    ]
    ds = datasets.load_nnunet_raw(root)
    assert len(ds.cases) == 3
    case = ds.cases["phantom_001"]
    image = io.read_canonical(case.image_path)
    label = io.read_canonical(case.label_path)
    assert image.array_dhw.shape == label.array_dhw.shape
    assert image.array_dhw.shape[1:] == (48, 48)
    # The generator's direction cosines are tilted, not the identity.
    assert not np.allclose(np.reshape(image.reference.GetDirection(), (3, 3)), np.eye(3))
    seeds = np.random.SeedSequence(1).generate_state(3)
    expected, _, _ = synth.render_case(int(seeds[1]), 48)
    np.testing.assert_array_equal(image.array_dhw, expected)
    assert not list(tmp_path.glob(".tmp-*"))


def test_split_proportions():
    split = synth.split_case_ids([f"c{i}" for i in range(80)], seed=0)
    assert [len(split[k]) for k in ("train", "validation", "test")] == [57, 12, 11]
