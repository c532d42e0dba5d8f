"""No patient identifiers from image headers reach logs, metrics, reports or outputs."""

from __future__ import annotations

import gzip
import shutil

import pytest
import SimpleITK as sitk

from lumbar_jax.data import check, datasets
from lumbar_jax.inference import jax_stage, writer
from lumbar_jax.training import loop
from tests.conftest import tiny_config
from tests.helpers import dicom


@pytest.fixture(scope="module")
def cascade_models(tiny_runs):
    return jax_stage.load_stages(tiny_runs["coarse"], tiny_runs["fine"])


def test_no_patient_identifiers_in_logs_reports_or_outputs(
    phantom_root, cascade_models, tmp_path, capsys
):
    # A dataset whose image headers carry a name and an ID (NIfTI descrip, MetaImage tags).
    root = tmp_path / "named"
    shutil.copytree(phantom_root, root)
    for path in (root / "imagesTr").glob("*.nii.gz"):
        image = sitk.ReadImage(str(path))
        image.SetMetaData("ITK_FileNotes", f"{dicom.PATIENT_NAME} {dicom.PATIENT_ID}")
        sitk.WriteImage(image, str(path))
    assert dicom.PATIENT_NAME.encode() in gzip.decompress(path.read_bytes())
    workdir = tmp_path / "run"
    loop.train_and_evaluate(tiny_config(root, **{"optim.num_epochs": "1"}), workdir)
    image = sitk.ReadImage(str(path))
    for key, value in (("PatientName", dicom.PATIENT_NAME), ("PatientID", dicom.PATIENT_ID)):
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(tmp_path / "scan.mha"))
    models = tuple(s.cascade_model() for s in cascade_models)
    out = tmp_path / "out"
    writer.predict_series(*models, tmp_path / "scan.mha", out, "scan")
    print(
        check.format_report(
            datasets.load_nnunet_raw(root), check.check_dataset(datasets.load_nnunet_raw(root))
        )
    )
    texts = {"stdout": capsys.readouterr().out}
    for path in [*workdir.rglob("*"), *out.iterdir()]:
        if path.is_file() and path.suffix in (".json", ".jsonl", ".md", ".mha"):
            texts[str(path)] = path.read_bytes().decode("latin-1")
    assert str(workdir / "metrics.jsonl") in texts and str(out / "scan.json") in texts
    for name, text in texts.items():
        for secret in (dicom.PATIENT_NAME, dicom.PATIENT_ID, "Secretia", "8675309"):
            assert secret not in text, f"{secret!r} in {name}"
