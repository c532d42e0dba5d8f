import json
import math
import os

import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_jax.data import datasets, io, pipeline, prepared, transforms
from lumbar_jax.data.phantom import dataset as phantom_dataset
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


def _labelled_case() -> prepared.PreparedCase:
    label = np.zeros((10, 60, 50), np.uint8)
    label[2:8, 10:30, 10:25] = 1
    label[3:7, 35:50, 20:40] = 2
    label[:, 40:52, 2:8] = 3
    return prepared.PreparedCase(
        "x", label.astype(np.float32) / 5, label, (4.0, 1.0, 1.2), np.ones(6, bool)
    )


def _aug(config, **values):
    aug = config.aug
    with aug.unlocked():
        for key, value in values.items():
            setattr(aug, key, value)
    return aug


def test_augmentation_keeps_labels_on_the_image():
    # An image that encodes its label (intensity = label / 5): after every spatial
    # augmentation (one resampling) and the flip, each output label must still sit on its own
    # intensity.
    rng = np.random.default_rng(0)
    case = _labelled_case()
    config = tiny_config("unused")
    aug = _aug(
        config,
        rotate_prob=1.0,
        rotate_max_deg=20.0,
        rotate_oop_prob=1.0,
        rotate_oop_max_deg=8.0,
        translate_prob=1.0,
        scale_prob=1.0,
        scale_range=(0.7, 1.4),
        flip_prob=0.5,
        bias_prob=0.0,
        contrast_prob=0.0,
        gamma_prob=0.0,
        crop_margin_jitter_mm=(0.0, 0.0, 0.0),  # a looser crop only thins the regions
    )
    make = pipeline.MakeSample(config.data, aug)
    unaugmented = pipeline.MakeSample(config.data, None).random_map(case, rng)
    for _ in range(8):
        sample = make.random_map(case, rng)
        image, out = sample["image_dhwc"][..., 0], sample["label_dhw"]
        assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1, 2, 3}  # nearest only
        assert not np.array_equal(out, unaugmented["label_dhw"])
        for k in (1, 2, 3):
            inside = out == k
            if inside.sum() > 20:
                # Linear interpolation blurs edges; the bulk of each region keeps its value.
                assert np.median(np.abs(image[inside] - k / 5)) < 0.02


def test_flip_reverses_slices_of_image_and_label():
    case = _labelled_case()
    config = tiny_config("unused")
    off = {f"{name}_prob": 0.0 for name in ("rotate", "rotate_oop", "translate", "scale")}
    off.update(bias_prob=0.0, contrast_prob=0.0, gamma_prob=0.0)
    plain = pipeline.MakeSample(config.data, _aug(config, **off, flip_prob=0.0))
    plain = plain.random_map(case, np.random.default_rng(0))
    flipped = pipeline.MakeSample(config.data, _aug(config, flip_prob=1.0))
    flipped = flipped.random_map(case, np.random.default_rng(0))
    np.testing.assert_array_equal(flipped["image_dhwc"], plain["image_dhwc"][::-1])
    np.testing.assert_array_equal(flipped["label_dhw"], plain["label_dhw"][::-1])
    assert flipped["image_dhwc"].flags.c_contiguous and flipped["label_dhw"].flags.c_contiguous


def test_intensity_augmentations_stay_in_range_and_keep_labels():
    case = _labelled_case()
    config = tiny_config("unused")
    off = {f"{name}_prob": 0.0 for name in ("rotate", "rotate_oop", "translate", "scale", "flip")}
    _aug(config, **off, crop_margin_jitter_mm=(0.0, 0.0, 0.0))
    plain = pipeline.MakeSample(config.data, None).random_map(case, np.random.default_rng(0))
    on = _aug(config, bias_prob=1.0, contrast_prob=1.0, gamma_prob=1.0)
    sample = pipeline.MakeSample(config.data, on).random_map(case, np.random.default_rng(1))
    np.testing.assert_array_equal(sample["label_dhw"], plain["label_dhw"])
    assert sample["image_dhwc"].dtype == np.float32
    assert sample["image_dhwc"].min() >= 0.0 and sample["image_dhwc"].max() <= 1.0
    assert not np.allclose(sample["image_dhwc"], plain["image_dhwc"], atol=1e-3)
    # Gamma keeps 0 and 1 and the order of intensities; contrast keeps the mean.
    ramp = np.linspace(0, 1, 50, dtype=np.float32).reshape(2, 5, 5)
    bent = transforms.adjust_gamma(ramp, 1.4)
    assert bent.ravel()[0] == 0 and bent.ravel()[-1] == 1 and (np.diff(bent.ravel()) > 0).all()
    mid = 0.4 + 0.2 * ramp
    assert transforms.adjust_contrast(mid, 1.2).mean() == pytest.approx(mid.mean(), abs=1e-6)
    # The bias field is smooth and its log stays within the drawn strength.
    field = transforms.bias_field((4, 30, 20), [0.3, -1, 0.5, 0.2, 1, -0.7], 0.25)
    assert np.abs(np.log(field)).max() == pytest.approx(0.25, rel=1e-5)
    assert np.abs(np.diff(np.log(field), axis=1)).max() < 0.1


def test_out_of_plane_rotation_and_scale():
    # Isotropic voxels, d and w the same size: a quarter turn about the superior-inferior
    # axis swaps the slice and anterior-posterior axes.
    shape, spacing = (8, 5, 8), (1.0, 1.0, 1.0)
    box = transforms.image_box(shape, spacing)
    volume = np.random.default_rng(0).random(shape)
    affine = transforms.sampling_affine(box, shape, spacing, rotate_si_rad=math.pi / 2)
    turned = transforms.resample(volume, affine, shape, is_label=True)
    np.testing.assert_allclose(turned, np.rot90(volume, k=-1, axes=(0, 2)), atol=1e-12)
    shape = (8, 8, 5)
    volume = np.random.default_rng(0).random(shape)
    box = transforms.image_box(shape, spacing)
    affine = transforms.sampling_affine(box, shape, spacing, rotate_ap_rad=math.pi / 2)
    turned = transforms.resample(volume, affine, shape, is_label=True)
    np.testing.assert_allclose(turned, np.rot90(volume, k=-1, axes=(0, 1)), atol=1e-12)
    # Scale 2 samples a region twice the box: a centred cube looks half as wide per axis.
    cube = np.zeros((16, 16, 16), np.uint8)
    cube[4:12, 4:12, 4:12] = 1
    box = transforms.image_box(cube.shape, spacing)
    affine = transforms.sampling_affine(box, cube.shape, spacing, scale=2.0)
    small = transforms.resample(cube, affine, cube.shape, is_label=True)
    assert small.sum() == 4**3 and small[6:10, 6:10, 6:10].all()


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
        prepared.prepare_case(bad_case, ds)


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


def test_disk_cache_skips_raw_files_until_they_change(tmp_path, monkeypatch):
    root = phantom_dataset.write_dataset(tmp_path / "ds", num_cases=2, seed=0, matrix=32)
    ds = datasets.load_nnunet_raw(root)
    cases, window, cache = ds.split("train"), (0.5, 99.5), tmp_path / "cache"
    first = prepared.CaseSource(cases, ds, window, cache)[0]
    files = list(cache.glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith(cases[0].case_id)
    assert not list(cache.glob("*.tmp"))

    def no_reading(path):
        raise AssertionError(f"read {path}")

    # A new process (a fresh source) loads the cache and reads no raw file.
    monkeypatch.setattr(io, "read_canonical", no_reading)
    again = prepared.CaseSource(cases, ds, window, cache)[0]
    np.testing.assert_array_equal(again.image_dhw, first.image_dhw)
    np.testing.assert_array_equal(again.label_dhw, first.label_dhw)
    assert again.image_dhw.dtype == np.float32 and again.label_dhw.dtype == np.uint8
    assert again.spacing_dhw == pytest.approx(first.spacing_dhw)
    np.testing.assert_array_equal(again.labeled_c, first.labeled_c)
    # Other settings are other cache entries.
    with pytest.raises(AssertionError, match="read"):
        prepared.CaseSource(cases, ds, (1.0, 99.0), cache)[0]
    # A changed source file (its modification time) misses the cache.
    stat = cases[0].image_path.stat()
    os.utime(cases[0].image_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="read"):
        prepared.CaseSource(cases, ds, window, cache)[0]
    monkeypatch.undo()

    # A corrupt cache file is ignored, prepared again and rewritten.
    path = prepared.cache_path(cache, cases[0], ds, window)
    assert not path.exists()
    prepared.CaseSource(cases, ds, window, cache)[0]
    path.write_bytes(path.read_bytes()[:100])
    assert prepared.load_prepared(path) is None
    rewritten = prepared.CaseSource(cases, ds, window, cache)[0]
    np.testing.assert_array_equal(prepared.load_prepared(path).image_dhw, rewritten.image_dhw)


def test_pipeline_uses_the_configured_cache(phantom_root, tmp_path):
    config = tiny_config(
        phantom_root, **{"data.preprocessed_cache": "True", "data.cache_dir": str(tmp_path)}
    )
    ds = datasets.load_nnunet_raw(phantom_root)
    cached = next(iter(pipeline.train_iter_dataset(config, ds)))
    # The first batch's cases at least (grain reads ahead); files still being written have
    # hidden temporary names.
    written = list((tmp_path / "prepared").glob("[!.]*.npz"))
    assert 2 <= len(written) <= len(ds.split("train"))
    plain = next(iter(pipeline.train_iter_dataset(tiny_config(phantom_root), ds)))
    np.testing.assert_array_equal(cached["image_dhwc"], plain["image_dhwc"])


def test_crop_margin_jitter_keeps_every_structure_inside():
    case = _labelled_case()
    config = tiny_config("unused")
    make = pipeline.MakeSample(config.data, config.aug)
    where = np.argwhere(case.label_dhw) * np.asarray(case.spacing_dhw)
    rng = np.random.default_rng(0)
    boxes = [make.box(case, rng) for _ in range(20)]
    for lo, hi in boxes:
        assert np.all(lo <= where.min(0)) and np.all(hi >= where.max(0))
    assert len({tuple(np.round(lo, 3)) for lo, _ in boxes}) == 20  # they do move
    fixed = pipeline.MakeSample(config.data, None)
    assert np.array_equal(fixed.box(case, rng)[0], fixed.box(case, rng)[0])


def test_coarse_crop_reads_stored_predictions(phantom_root, tmp_path):
    import SimpleITK as sitk

    from lumbar_jax.data import datasets

    dataset = datasets.load_dataset(phantom_root)
    cases = dataset.split("validation")
    coarse = tmp_path / "coarse"
    coarse.mkdir()
    config = tiny_config(phantom_root, **{"data.crop": "coarse"})
    with pytest.raises(ValueError, match=r"needs data\.coarse_predictions"):
        pipeline.coarse_dir(config.data)
    with config.unlocked():
        config.data.coarse_predictions = str(coarse)
    with pytest.raises(ValueError, match="no coarse prediction for case"):
        list(pipeline.eval_samples(config, dataset, "validation"))
    # A "prediction" that marks only one corner block: the crop must be around that block.
    image = sitk.ReadImage(str(cases[0].image_path))
    block = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    block[2:5, 5:20, 5:20] = 1
    prediction = sitk.GetImageFromArray(block)
    prediction.CopyInformation(image)
    sitk.WriteImage(prediction, str(coarse / f"{cases[0].case_id}.nii.gz"))
    source = prepared.CaseSource(cases, dataset, (0.5, 99.5), None, coarse)
    case = source[0]
    make = pipeline.MakeSample(config.data, None)
    lo, hi = make.box(case)
    where = np.argwhere(case.coarse_dhw) * np.asarray(case.spacing_dhw)
    label_lo, _ = pipeline.MakeSample(tiny_config(phantom_root).data, None).box(case)
    assert np.all(lo <= where.min(0)) and np.all(hi >= where.max(0))
    assert not np.allclose(lo, label_lo)  # not the ground truth's box


def test_tissue_synthesis_samples_carry_their_tissue_map(phantom_root):
    from lumbar_jax.data.phantom import tissues

    config = tiny_config(phantom_root, **{"data.synthesis": "tissues"})
    ds = datasets.load_nnunet_raw(phantom_root)
    it = iter(pipeline.train_iter_dataset(config, ds))
    batch = next(it)
    assert batch["tissue_dhw"].shape == batch["label_dhw"].shape
    assert batch["has_tissue"].all() and batch["spacing_3"].shape == (2, 3)
    assert (batch["spacing_3"] > 0).all()
    # The labels are the tissue map's structures: both went through the same resampling.
    np.testing.assert_array_equal(tissues.LABEL_OF_TISSUE[batch["tissue_dhw"]], batch["label_dhw"])
    # A dataset without tissue maps (a user's own images): the samples say so.
    plain = phantom_root.parent / "plain"
    if not plain.exists():
        import shutil

        shutil.copytree(phantom_root, plain, ignore=shutil.ignore_patterns("tissuesTr"))
    batch = next(iter(pipeline.train_iter_dataset(config, datasets.load_nnunet_raw(plain))))
    assert not batch["has_tissue"].any() and not batch["tissue_dhw"].any()


def test_unknown_synthesis_is_refused(phantom_root):
    config = tiny_config(phantom_root, **{"data.synthesis": "gan"})
    with pytest.raises(ValueError, match=r"config\.data\.synthesis is 'gan'"):
        pipeline.synthesis(config.data)


def test_tiles_cover_the_box_with_the_promised_overlap():
    box = (np.array([0.0, 10.0, 0.0]), np.array([40.0, 310.0, 100.0]))
    tiles = transforms.tile_boxes(box, 3, 0.25, (16, 96, 64))
    assert len(tiles) == 3
    # Height 300 mm in 3 tiles sharing a quarter: 3 t - 2 t / 4 = 300, t = 120 mm.
    assert transforms.tile_height(box, 3, 0.25) == pytest.approx(120.0)
    centres = [(lo[1] + hi[1]) / 2 for lo, hi in tiles]
    np.testing.assert_allclose(centres, [70.0, 160.0, 250.0])
    for lo, hi in tiles:
        size = hi - lo
        assert size[1] / size[2] == pytest.approx(96 / 64)  # square in-plane voxels
        assert (lo[0], hi[0]) == (0.0, 40.0)  # every slice
        assert lo[2] <= 0.0 and hi[2] >= 100.0  # the whole anterior-posterior extent
    assert tiles[0][0][1] <= 10.0 and tiles[-1][1][1] >= 310.0
    # One tile is the box widened, as label_box(..., out_shape) gives it.
    (one,) = transforms.tile_boxes(box, 1, 0.25, (16, 96, 64))
    widened = transforms.widen_to_aspect(box, (16, 96, 64))
    np.testing.assert_allclose(one, widened)
    with pytest.raises(ValueError, match="overlap"):
        transforms.tile_boxes(box, 2, 1.0, (16, 96, 64))


def test_sliding_tiles_keep_the_tile_and_step_closer():
    box = (np.array([0.0, 10.0, 0.0]), np.array([40.0, 310.0, 100.0]))
    # At the training's step (1 - overlap) they are the training's tiles.
    same, overlap = transforms.sliding_tiles(box, 3, 0.25, 0.75, (16, 96, 64))
    np.testing.assert_allclose(same, transforms.tile_boxes(box, 3, 0.25, (16, 96, 64)))
    assert overlap == pytest.approx(0.25)
    # Half a tile apart (nnU-Net's default): 120 mm tiles over 300 mm need 180 / 60 + 1 = 4.
    # (Each 120 x 100 mm tile is then widened to 150 x 100 mm, the input's 96 : 64.)
    tiles, overlap = transforms.sliding_tiles(box, 3, 0.25, 0.5, (16, 96, 64))
    centres = [(lo[1] + hi[1]) / 2 for lo, hi in tiles]
    np.testing.assert_allclose(centres, [70.0, 130.0, 190.0, 250.0])
    np.testing.assert_allclose([hi[1] - lo[1] for lo, hi in tiles], 150.0)
    assert overlap == pytest.approx(0.5)
    # A step that does not divide the span: as few tiles as keep them that close, spread evenly.
    tiles, overlap = transforms.sliding_tiles(box, 3, 0.25, 0.6, (16, 96, 64))
    np.testing.assert_allclose([(lo[1] + hi[1]) / 2 for lo, hi in tiles], centres)
    # One tile stays one tile, whatever the step.
    (one,), overlap = transforms.sliding_tiles(box, 1, 0.25, 0.5, (16, 96, 64))
    np.testing.assert_allclose(one, transforms.widen_to_aspect(box, (16, 96, 64)))
    assert overlap == 0.0
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="step"):
            transforms.sliding_tiles(box, 3, 0.25, bad, (16, 96, 64))


def test_scaled_boxes_grow_in_plane_about_their_centres():
    tiles = [
        (np.array([0.0, 10.0, 0.0]), np.array([40.0, 160.0, 100.0])),
        (np.array([0.0, 110.0, 0.0]), np.array([40.0, 310.0, 100.0])),
    ]
    boxes = transforms.scaled_boxes(tiles, (1.0, 1.2))
    assert len(boxes) == 4  # every tile at the first scale, then every tile at the next
    for (lo, hi), (tile_lo, tile_hi) in zip(boxes[:2], tiles, strict=True):
        np.testing.assert_allclose(np.stack([lo, hi]), np.stack([tile_lo, tile_hi]))
    # 1.2 times as tall and deep, the same slices, the same centre.
    np.testing.assert_allclose(boxes[2][0], [0.0, -5.0, -10.0])
    np.testing.assert_allclose(boxes[2][1], [40.0, 175.0, 110.0])
    np.testing.assert_allclose(boxes[3][0], [0.0, 90.0, -10.0])
    np.testing.assert_allclose(boxes[3][1], [40.0, 330.0, 110.0])
    # A smaller scale shrinks them.
    ((lo, hi),) = transforms.scaled_boxes(tiles[:1], [0.5])
    np.testing.assert_allclose(np.stack([lo, hi]), [[0.0, 47.5, 25.0], [40.0, 122.5, 75.0]])
    for bad in ([], [0.0], [1.0, -1.1], [float("nan")], [float("inf")]):
        with pytest.raises(ValueError, match="at least one positive, finite scale"):
            transforms.scaled_boxes(tiles, bad)


def test_random_tiles_stay_inside_the_box_and_keep_their_height():
    box = (np.array([0.0, 10.0, 0.0]), np.array([40.0, 310.0, 100.0]))
    rng = np.random.default_rng(0)
    tiles = [transforms.random_tile(box, 3, 0.25, (16, 96, 128), rng) for _ in range(200)]
    tops = np.array([lo[1] for lo, _ in tiles])
    heights = np.array([hi[1] - lo[1] for lo, hi in tiles])
    # A 120 x 100 mm tile is taller than the input's 96 : 128, so it widens anteriorly and
    # posteriorly, and its height stays the tile's.
    np.testing.assert_allclose(heights, 120.0)
    assert tops.min() >= 10.0 and tops.max() + 120.0 <= 310.0
    # Tiles at 10, 100 and 190 mm: the end tiles flush with the box's ends (a third of the
    # draws each), the middle one moved by up to +-45 mm, covering the places between.
    assert 0.25 < np.mean(tops == 10.0) < 0.42 and 0.25 < np.mean(tops == 190.0) < 0.42
    inner = tops[(tops > 10.0) & (tops < 190.0)]
    assert inner.min() >= 55.0 and inner.max() <= 145.0
    assert np.histogram(inner, bins=6, range=(55.0, 145.0))[0].min() > 0


def test_tiled_crops_sample_each_tile_at_a_finer_voxel(phantom_root):
    config = tiny_config(phantom_root, **{"data.crop_tiles": "2"})
    whole = tiny_config(phantom_root)
    dataset = datasets.load_dataset(phantom_root)
    samples = list(pipeline.eval_samples(config, dataset, "validation"))
    case_ids = [c.case_id for c in dataset.split("validation")]
    assert [name for name, _ in samples] == [f"{c}:tile{k}" for c in case_ids for k in range(2)]
    case = pipeline.case_source(config.data, dataset, dataset.split("validation"))[0]
    tiled = pipeline.MakeSample(config.data, None)
    plain = pipeline.MakeSample(whole.data, None)
    top, bottom = tiled.box(case, tile=0), tiled.box(case, tile=1)
    lo, hi = plain.box(case)
    # Two tiles of a crop taller than the input's aspect: each shorter than the whole.
    assert top[1][1] - top[0][1] < hi[1] - lo[1]
    assert top[0][1] < bottom[0][1] < top[1][1] < bottom[1][1]  # they overlap, in order
    # Training draws a tile at random, with the same size as the evaluated ones.
    train = pipeline.MakeSample(config.data, config.aug)
    drawn = train.box(case, np.random.default_rng(3))
    assert drawn[1][1] - drawn[0][1] == pytest.approx(top[1][1] - top[0][1], rel=0.15)
    bad = tiny_config(phantom_root, **{"data.crop_tiles": "2", "data.crop": "image"})
    with pytest.raises(ValueError, match="crop_tiles > 1 needs a structure crop"):
        pipeline.MakeSample(bad.data, None)
