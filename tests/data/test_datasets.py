from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_jax.data import datasets, io, prepared
from tests.helpers import REAL_DATA

REAL = REAL_DATA
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real is not here")


def test_parse_label_map():
    assert datasets.parse_label_map("1-3:2, 100:4") == {0: 0, 1: 2, 2: 2, 3: 2, 100: 4}
    with pytest.raises(ValueError, match="target 9 is not one of our labels"):
        datasets.parse_label_map("1:9")
    with pytest.raises(ValueError, match=r"'a:1' is not VALUE\[-VALUE\]:TARGET"):
        datasets.parse_label_map("a:1")
    labeled = datasets.labeled_classes(datasets.parse_label_map("1-25:1,100:4,201-225:2"))
    assert labeled == (True, True, True, False, True, False)


def _centroid_h(label_dhw, value):
    return np.nonzero(label_dhw == value)[1].mean()


@needs_real
def test_real_discs_folder_layout_and_orientation():
    ds = datasets.load_dataset(REAL / "lumbar_discs_t2", label_map="1-5:2")
    assert sorted(ds.cases) == ["case11", "case20"]
    assert ds.labeled_classes == (True, False, True, False, False, False)
    case = ds.cases["case11"]
    raw = io.read_canonical(case.label_path)
    # Canonical layout: 67 sagittal slices, then superior->inferior, anterior->posterior.
    assert raw.array_dhw.shape == (67, 221, 221)
    # Disc 1 is L5/S1 (most inferior), disc 5 is L1/L2: inferior means larger h.
    assert _centroid_h(raw.array_dhw, 1) > _centroid_h(raw.array_dhw, 5)
    case_prepared = prepared.prepare_case(case, ds)
    assert set(np.unique(case_prepared.label_dhw)) == {0, 2}
    assert case_prepared.labeled_c.tolist() == [True, False, True, False, False, False]
    assert case_prepared.image_dhw.min() >= 0.0 and case_prepared.image_dhw.max() <= 1.0


@needs_real
def test_real_vertebral_bodies_order():
    ds = datasets.load_dataset(REAL / "lumbar_vertebral_bodies_t2", label_map="1-7:1")
    raw = io.read_canonical(ds.cases["case02"].label_path).array_dhw
    # Superior to inferior the instance ids run 7, 6, 5, 4, 3, 1, 2 (the data's README).
    order = sorted(range(1, 8), key=lambda v: _centroid_h(raw, v))
    assert order == [7, 6, 5, 4, 3, 1, 2]
    assert ds.labeled_classes == (True, True, False, False, False, False)


def _write_spider_case(root: Path, name: str) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(0).random((6, 20, 10)).astype(np.float32)
    mask = np.zeros((6, 20, 10), np.uint16)
    mask[2:4, 2:6, 2:8] = 3  # a vertebra
    mask[2:4, 6:8, 2:8] = 203  # a disc
    mask[2:4, 2:12, 8:10] = 100  # the canal
    for folder, array in (("images", image), ("masks", mask)):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(root / folder / f"{name}.mha"))


def test_spider_layout_maps_labels(tmp_path):
    for name in ("1_t2", "2_t2", "3_t2"):
        _write_spider_case(tmp_path / "spider", name)
    ds = datasets.load_dataset(tmp_path / "spider")
    assert sorted(ds.cases) == ["1_t2", "2_t2", "3_t2"]
    assert ds.labeled_classes == (True, True, True, False, True, False)
    case_prepared = prepared.prepare_case(ds.cases["1_t2"], ds)
    assert set(np.unique(case_prepared.label_dhw)) == {0, 1, 2, 4}


def test_layout_detection_and_errors(phantom_root, tmp_path):
    assert datasets.load_dataset(phantom_root).label_map == {i: i for i in range(6)}
    (tmp_path / "pairs").mkdir()
    with pytest.raises(ValueError, match="needs a label map"):
        datasets.load_dataset(tmp_path / "pairs")
    with pytest.raises(ValueError, match="no image/label pairs found"):
        datasets.load_dataset(tmp_path / "pairs", label_map="1:2")
    with pytest.raises(ValueError, match="no such dataset folder"):
        datasets.load_dataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="Unknown dataset layout 'bids'"):
        datasets.load_dataset(phantom_root, layout="bids")


def test_a_mix_of_datasets_keeps_each_cases_label_map(phantom_root, tmp_path):
    import json

    from lumbar_jax.data import prepared

    mix = tmp_path / "mix.json"
    mix.write_text(
        json.dumps(
            {
                "datasets": [
                    {"root": str(phantom_root), "name": "ph"},
                    {
                        "root": str(REAL / "lumbar_discs_t2"),
                        "label_map": "1-5:2",
                        "split": {"train": ["case11"], "test": ["case20"]},
                        "repeat": 3,
                    },
                ]
            }
        )
    )
    ds = datasets.load_dataset_or_mix(mix)
    assert len(ds.cases) == 8 + 2
    assert ds.splits["train"].count("lumbar_discs_t2/case11") == 3  # repeated per epoch
    assert "lumbar_discs_t2/case20" in ds.splits["test"]
    assert len([i for i in ds.splits["train"] if i.startswith("ph/")]) == 6
    disc_case = ds.cases["lumbar_discs_t2/case20"]
    assert ds.labeled_of(disc_case) == (True, False, True, False, False, False)
    assert ds.labeled_of(ds.cases["ph/phantom_000"]) == (True,) * 6
    assert ds.labeled_classes == (True,) * 6
    label = prepared.prepare_case(disc_case, ds).label_dhw
    assert set(np.unique(label).tolist()) == {0, 2}  # discs 1..5 became our disc label
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"datasets": [{"root": str(phantom_root), "split": {"train": ["x"]}}]})
    )
    with pytest.raises(ValueError, match=r"bad\.json: phantom has no cases \['x'\]"):
        datasets.load_dataset_or_mix(bad)
    # A mix sets label maps per dataset: one given beside it would be ignored, so it is refused.
    assert len(datasets.load_dataset_or_mix(mix, "auto", "", "**/*_image.nii.gz").cases) == 10
    with pytest.raises(ValueError, match=r"mix\.json: .*remove label_map='1:2'"):
        datasets.load_dataset_or_mix(mix, "auto", "1:2")
