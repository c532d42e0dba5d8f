"""Prediction of whole series with tiny trained stages: outputs on the input's exact grid."""

import gzip
import json

import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_jax.data import io
from lumbar_jax.inference import jax_stage, series, writer
from tests.helpers import dicom
from tests.helpers.commands import run_command


@pytest.fixture(scope="module")
def stages(tiny_runs):
    coarse, fine = jax_stage.load_stages(tiny_runs["coarse"], tiny_runs["fine"])
    return coarse.cascade_model(), fine.cascade_model()


def _phantom_image(phantom_root, k=0) -> sitk.Image:
    return sitk.ReadImage(str(phantom_root / "imagesTr" / f"phantom_{k:03d}_0000.nii.gz"))


def _assert_same_grid(a: sitk.Image, b: sitk.Image):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def test_outputs_keep_a_non_canonical_grid_and_the_report_matches(stages, phantom_root, tmp_path):
    image = sitk.DICOMOrient(_phantom_image(phantom_root), "LAS")  # another voxel order
    source = tmp_path / "in" / "scan.mha"
    source.parent.mkdir()
    sitk.WriteImage(image, str(source))
    summary = writer.predict_series(*stages, source, tmp_path / "out", "scan")

    labels = sitk.ReadImage(str(tmp_path / "out" / "scan_labels.mha"))
    _assert_same_grid(labels, image)
    assert labels.GetPixelID() == sitk.sitkUInt8
    array = sitk.GetArrayFromImage(labels)
    # The label map is the cascade's canonical result put back on the input's grid.
    canonical, _ = io.to_canonical(labels)
    assert canonical.shape == io.read_canonical(source).array_dhw.shape

    written = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert written == json.loads(json.dumps(summary))
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    for value, name in enumerate(written["structures"], start=1):
        entry = written["structures"][name]
        assert entry["voxels"] == int((array == value).sum())
        assert entry["volume_mm3"] == pytest.approx(entry["voxels"] * voxel_mm3, abs=0.1)
        if entry["voxels"]:
            index = np.argwhere(array == value).mean(0)[::-1]
            want = labels.TransformContinuousIndexToPhysicalPoint(tuple(index.tolist()))
            np.testing.assert_allclose(entry["centroid_world_mm"], want, atol=0.01)
    assert written["grid"]["size_xyz"] == list(image.GetSize())
    # Level names and measurements of the same label map (tests/inference/test_levels.py and
    # test_measure.py check their values).
    assert written["levels"]["level_confidence"] in ("high", "low")
    assert written["measurements"]["mid_sagittal_slice"] in range(canonical.shape[0])
    for component in written["structures"]["vertebral_body"]["components"]:
        assert "level" in component
    assert (tmp_path / "out" / "scan.png").stat().st_size > 1000


def test_dicom_series_in_no_identifiers_out(stages, phantom_root, tmp_path):
    folder = dicom.write_series(_phantom_image(phantom_root, 1), tmp_path / "patient_series")
    [found] = series.find_series([tmp_path])
    assert found == folder
    writer.predict_series(*stages, found, tmp_path / "out", "series1")
    labels = sitk.ReadImage(str(tmp_path / "out" / "series1_labels.nii.gz"))
    _assert_same_grid(labels, io.read_image(folder))
    for path in (tmp_path / "out").iterdir():
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        for secret in (dicom.PATIENT_NAME, dicom.PATIENT_ID, "Testperson", "19700101"):
            assert secret.encode() not in data, f"{secret} in {path.name}"


def test_find_series_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.nii.gz", "a/y.mha", "b.nrrd", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    found = series.find_series([tmp_path])
    assert sorted(p.name for p in found) == ["b.nrrd", "x.nii.gz", "y.mha"]
    assert series.output_names([tmp_path / "s.nii.gz", tmp_path / "d" / "s.mha"]) == ["s", "s_2"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        series.find_series([tmp_path / "empty"])


def test_stage_errors_name_the_path(tiny_runs, tmp_path):
    with pytest.raises(jax_stage.StageLoadError, match="given as the coarse stage"):
        jax_stage.load_stages(tiny_runs["fine"], tiny_runs["fine"])
    with pytest.raises(jax_stage.StageLoadError, match="no such run"):
        jax_stage.load_stage(tmp_path / "missing")
    with pytest.raises(jax_stage.StageLoadError, match="not a run folder"):
        jax_stage.load_stage(tmp_path)
    # A checkpoint folder inside a run names that checkpoint.
    best = next((tiny_runs["coarse"] / "checkpoints" / "best").glob("[0-9]*"))
    assert jax_stage.load_stage(best).step == int(best.name)


@pytest.mark.slow
def test_predict_command_reports_a_bad_series_and_does_the_rest(tiny_runs, phantom_root, tmp_path):
    good = tmp_path / "in" / "good.nii.gz"
    good.parent.mkdir()
    sitk.WriteImage(_phantom_image(phantom_root, 2), str(good))
    bad = tmp_path / "in" / "bad.nii.gz"
    bad.write_bytes(good.read_bytes()[:2000])  # truncated
    result = run_command(
        "predict",
        f"--coarse={tiny_runs['coarse']}",
        f"--fine={tiny_runs['fine']}",
        f"--output={tmp_path / 'out'}",
        "--flip_tta",
        tmp_path / "in",
    )
    assert result.returncode != 0
    assert "bad.nii.gz" in result.stderr and "truncated" in result.stderr
    assert "1 of 2 series predicted" in result.stdout
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["good.json", "good.png", "good_labels.nii.gz"]
    assert json.loads((tmp_path / "out" / "good.json").read_text())["cascade"]["flip_tta"]


def test_coarse_predictions_of_a_dataset_feed_coarse_crops(stages, phantom_root, tmp_path):
    from lumbar_jax.data import datasets, pipeline
    from tests.conftest import tiny_config

    dataset = datasets.load_dataset(phantom_root)
    assert writer.predict_coarse_dataset(stages[0], dataset, tmp_path) == len(dataset.cases)
    for case in dataset.cases.values():
        written = sitk.ReadImage(str(tmp_path / f"{case.case_id}.nii.gz"))
        _assert_same_grid(written, sitk.ReadImage(str(case.image_path)))
    config = tiny_config(
        phantom_root, **{"data.crop": "coarse", "data.coarse_predictions": str(tmp_path)}
    )
    samples = list(pipeline.eval_samples(config, dataset, "validation"))
    assert samples[0][1]["image_dhwc"].shape == (*config.data.input_shape, 1)
