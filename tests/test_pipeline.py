import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_jax.data import datasets, io, pipeline, transforms
from tests.conftest import tiny_config


def test_samples_have_network_shape(phantom_root):
    config = tiny_config(phantom_root)
    ds = datasets.load_nnunet_raw(phantom_root)
    batch = next(iter(pipeline.train_iter_dataset(config, ds)))
    assert batch["image_dhwc"].shape == (2, 8, 32, 16, 1)
    assert batch["image_dhwc"].dtype == np.float32
    assert batch["label_dhw"].shape == (2, 8, 32, 16)
    assert batch["labeled_c"].shape == (2, 6) and batch["labeled_c"].all()
    assert batch["image_dhwc"].min() >= 0.0 and batch["image_dhwc"].max() <= 1.0
    # The fine crop is centred on the structures: most of the crop is labelled anatomy.
    assert (batch["label_dhw"] > 0).mean() > 0.1


def test_deterministic_for_a_seed_and_resumable(phantom_root):
    config = tiny_config(phantom_root)
    ds = datasets.load_nnunet_raw(phantom_root)
    first = [next(it) for it in [iter(pipeline.train_iter_dataset(config, ds))] for _ in range(5)]
    again = iter(pipeline.train_iter_dataset(config, ds))
    for expected in first[:2]:
        np.testing.assert_array_equal(next(again)["image_dhwc"], expected["image_dhwc"])
    state = again.get_state()
    resumed = iter(pipeline.train_iter_dataset(config, ds))
    resumed.set_state(json.loads(json.dumps(state)) if isinstance(state, dict) else state)
    for expected in first[2:]:
        batch = next(resumed)
        np.testing.assert_array_equal(batch["image_dhwc"], expected["image_dhwc"])
        np.testing.assert_array_equal(batch["label_dhw"], expected["label_dhw"])
    other = tiny_config(phantom_root, seed="1")
    assert not np.array_equal(
        next(iter(pipeline.train_iter_dataset(other, ds)))["image_dhwc"], first[0]["image_dhwc"]
    )


def test_augmentation_keeps_labels_on_the_image():
    # An image that encodes its label (intensity = label / 5): after rotation, translation and
    # resampling, each output label must still sit on its own intensity.
    rng = np.random.default_rng(0)
    label = np.zeros((10, 60, 50), np.uint8)
    label[2:8, 10:30, 10:25] = 1
    label[3:7, 35:50, 20:40] = 2
    label[:, 40:52, 2:8] = 3
    case = pipeline.PreparedCase(
        "x", label.astype(np.float32) / 5, label, (4.0, 1.0, 1.2), np.ones(6, bool)
    )
    config = tiny_config("unused")
    aug = config.aug
    with aug.unlocked():
        aug.rotate_prob = aug.translate_prob = 1.0
        aug.rotate_max_deg = 20.0
    make = pipeline.MakeSample(config.data, aug)
    for _ in range(5):
        sample = make.random_map(case, rng)
        image, out = sample["image_dhwc"][..., 0], sample["label_dhw"]
        for k in (1, 2, 3):
            inside = out == k
            if inside.sum() > 20:
                # Linear interpolation blurs edges; the bulk of each region keeps its value.
                assert np.median(np.abs(image[inside] - k / 5)) < 0.02


def test_sampling_affine_identity_and_rotation():
    shape, spacing = (4, 10, 10), (2.0, 1.0, 1.0)
    box = transforms.image_box(shape, spacing)
    matrix, offset = transforms.sampling_affine(box, shape, spacing)
    np.testing.assert_allclose(matrix, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(offset, 0.0, atol=1e-12)
    volume = np.random.default_rng(0).random(shape)
    same = transforms.resample(volume, (matrix, offset), shape, is_label=False)
    np.testing.assert_allclose(same, volume, atol=1e-12)
    # A quarter turn in the sagittal plane maps rows onto columns.
    matrix, offset = transforms.sampling_affine(box, shape, spacing, rotate_rad=math.pi / 2)
    turned = transforms.resample(volume, (matrix, offset), shape, is_label=True)
    np.testing.assert_allclose(turned, np.rot90(volume, k=-1, axes=(1, 2)), atol=1e-12)


def test_label_box_keeps_output_aspect():
    label = np.zeros((5, 100, 100), np.uint8)
    label[1:4, 20:80, 40:50] = 1
    lo, hi = transforms.label_box(label, (4.0, 1.0, 1.0), (0.0, 5.0, 5.0), (16, 320, 128))
    size = hi - lo
    assert size[1] / size[2] == pytest.approx(320 / 128)
    # Voxels 20..79 span 19.5..79.5 mm; 5 mm margin each side. Height sets the size.
    assert (lo[1], hi[1]) == pytest.approx((14.5, 84.5))
    assert size[2] == pytest.approx(70 / 2.5)
    assert (lo[2] + hi[2]) / 2 == pytest.approx(44.5)


def test_window_rejects_constant_and_nan():
    with pytest.raises(ValueError, match=r"a\.nii: image is constant"):
        transforms.auto_window(np.ones((2, 3, 4)), source="a.nii")
    bad = np.zeros((2, 3, 4))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"b\.nii: image holds NaN"):
        transforms.auto_window(bad, source="b.nii")


def test_unknown_label_value_names_the_file(phantom_root, tmp_path):
    ds = datasets.load_nnunet_raw(phantom_root)
    case = ds.cases["phantom_000"]
    label = sitk.ReadImage(str(case.label_path))
    array = sitk.GetArrayFromImage(label)
    array[0, 0, 0] = 9
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(label)
    bad_path = tmp_path / "bad.nii.gz"
    io.write_image(bad, bad_path)
    bad_case = datasets.Case("bad", case.image_path, bad_path)
    with pytest.raises(ValueError, match=r"bad.nii.gz: label values \[9\] are not declared"):
        pipeline.prepare_case(bad_case, ds)


def test_batch_larger_than_split_is_an_error(phantom_root):
    config = tiny_config(phantom_root, **{"optim.batch_size": "7"})
    ds = datasets.load_nnunet_raw(phantom_root)
    with pytest.raises(ValueError, match="6 training cases cannot fill a batch of 7"):
        pipeline.train_iter_dataset(config, ds)


def test_process_shares_make_up_the_global_batch(phantom_root):
    config = tiny_config(phantom_root, **{"optim.batch_size": "4"})
    ds = datasets.load_nnunet_raw(phantom_root)
    whole = iter(pipeline.train_iter_dataset(config, ds))
    shares = [
        iter(pipeline.train_iter_dataset(config, ds, process_index=p, process_count=2))
        for p in range(2)
    ]
    late = iter(
        pipeline.train_iter_dataset(config, ds, process_index=1, process_count=2, start_step=2)
    )
    for step in range(3):
        batch = next(whole)
        parts = [next(s) for s in shares]
        for key in ("image_dhwc", "label_dhw"):
            np.testing.assert_array_equal(
                np.concatenate([p[key] for p in parts]), batch[key], err_msg=f"step {step}"
            )
        if step == 2:  # a process starting at step 2 yields that step's share
            np.testing.assert_array_equal(next(late)["image_dhwc"], parts[1]["image_dhwc"])
