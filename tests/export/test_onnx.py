"""ONNX export of tiny trained stages, verified; the JAX-free ONNX backend."""

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import SimpleITK as sitk

from lumbar_jax import config as config_lib
from lumbar_jax.export import onnx as export
from lumbar_jax.inference import backends, jax_stage, onnx_stage, writer
from tests.helpers.commands import run_command


@pytest.fixture(scope="module")
def stages(tiny_runs):
    return jax_stage.load_stages(tiny_runs["coarse"], tiny_runs["fine"])


@pytest.fixture(scope="module")
def exported(stages, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    results = {}
    for trained in stages:
        name = trained.config.stage
        results[name] = export.export_stage(trained, folder / f"{name}.onnx")
    return folder, results


def test_export_matches_jax(exported, stages):
    folder, results = exported
    for name, checks in results.items():
        assert {c.name for c in checks} == {"random", "random_batch3", "phantom"}
        for c in checks:
            # Within 1e-4 of the logit scale (float32 sums in another order).
            assert c.max_abs_diff < 1e-4 * max(1.0, c.logit_scale), (name, c)
            assert c.argmax_agreement >= 0.999, (name, c)
        assert next(c for c in checks if c.name == "random_batch3").batch == 3
    model = onnx.load(str(folder / "fine.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    fine = stages[1]
    assert json.loads(meta["input_shape_dhw"]) == list(fine.config.data.input_shape)
    assert json.loads(meta["label_names"])[1] == "vertebral_body"
    assert meta["config_sha256"] == export.config_hash(fine.config)
    assert meta["stage"] == "fine" and meta["lumbar_jax_version"]
    # The cascade's decision travels with the model (the tiny runs keep the argmax).
    assert fine.config.inference.background_scale == (1.0,)
    assert json.loads(meta["background_scale"]) == [1.0] * 5  # one per structure
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [
        *fine.config.data.input_shape,
        1,
    ]


def test_onnx_backend_predicts_what_jax_predicts(exported, stages, phantom_root, tmp_path):
    folder, _ = exported
    source = phantom_root / "imagesTr" / "phantom_005_0000.nii.gz"
    on_onnx = backends.load_cascade(folder / "coarse.onnx", folder / "fine.onnx")
    assert on_onnx.backend == "onnx"
    jax_models = [s.cascade_model() for s in stages]
    writer.predict_series(*jax_models, source, tmp_path / "jax", "x")
    writer.predict_series(on_onnx.coarse, on_onnx.fine, source, tmp_path / "onnx", "x")
    a, b = (
        sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / k / "x_labels.nii.gz")))
        for k in ("jax", "onnx")
    )
    assert np.mean(a == b) >= 0.999


def test_bfloat16_trained_model_exports(stages, tmp_path):
    fine = stages[1]
    config = config_lib.to_dict(fine.config)
    config["model"]["dtype"] = "bfloat16"
    bf16 = dataclasses.replace(fine, config=config_lib.from_dict(config))
    checks = export.export_stage(bf16, tmp_path / "bf16.onnx")
    assert all(c.max_abs_diff < 1e-4 * max(1.0, c.logit_scale) for c in checks)
    meta = onnx_stage.read_metadata(onnx_stage.session(tmp_path / "bf16.onnx"))
    assert meta["trained_dtype"] == "bfloat16" and meta["export_dtype"] == "float32"


def test_failed_verification_writes_nothing(stages, tmp_path):
    with pytest.raises(export.ExportError, match="No model was written"):
        export.export_stage(stages[0], tmp_path / "m.onnx", tolerance=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_bad_models_and_checkpoints_are_clear_errors(exported, tiny_runs, tmp_path):
    folder, _ = exported
    with pytest.raises(onnx_stage.OnnxModelError, match="no such ONNX model"):
        onnx_stage.load_stage(tmp_path / "none.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(onnx_stage.OnnxModelError, match=r"bad\.onnx: not a loadable ONNX model"):
        onnx_stage.load_stage(tmp_path / "bad.onnx")
    with pytest.raises(onnx_stage.OnnxModelError, match="given as the coarse stage"):
        onnx_stage.load_stages(folder / "fine.onnx", folder / "fine.onnx")
    # A checkpoint whose data files are damaged, and a config.json that does not fit it.
    run = tmp_path / "run"
    shutil.copytree(tiny_runs["fine"], run)
    for path in (run / "checkpoints").rglob("d/*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    with pytest.raises(jax_stage.StageLoadError, match="cannot restore checkpoint"):
        jax_stage.load_stage(run)
    shutil.rmtree(run)
    shutil.copytree(tiny_runs["fine"], run)
    config = json.loads((run / "config.json").read_text())
    config["model"]["base_filters"] *= 2
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(jax_stage.StageLoadError, match="do not fit the model"):
        jax_stage.load_stage(run)


@pytest.mark.slow
def test_export_command_and_jax_free_prediction(tiny_runs, phantom_root, tmp_path):
    export_run = run_command(
        "export_onnx",
        "--cascade",
        f"--coarse={tiny_runs['coarse']}",
        f"--fine={tiny_runs['fine']}",
        f"--output={tmp_path / 'models'}",
    )
    assert export_run.returncode == 0, export_run.stderr[-2000:]
    assert "argmax agreement" in export_run.stdout
    # The ONNX backend with JAX made unimportable.
    argv = [
        "lumbar-jax predict",
        f"--coarse={tmp_path / 'models' / 'coarse.onnx'}",
        f"--fine={tmp_path / 'models' / 'fine.onnx'}",
        f"--output={tmp_path / 'out'}",
        str(phantom_root / "imagesTr" / "phantom_003_0000.nii.gz"),
    ]
    code = (
        "import sys; sys.modules['jax'] = None; sys.modules['flax'] = None; "
        f"sys.argv = {argv!r}; from lumbar_jax.cli import predict; predict.cli()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "phantom_003_0000.json").read_text())
    assert report["cascade"]["backend"] == "onnx"
    assert (tmp_path / "out" / "phantom_003_0000_labels.nii.gz").is_file()


def test_the_fine_crops_tiles_travel_with_the_model(exported, stages):
    folder, _ = exported
    loaded, meta = onnx_stage.load_stage(folder / "fine.onnx")
    assert meta["crop_tiles"] == "1" and loaded.crop_tiles == 1  # the tiny runs: one crop
    fine = stages[1]
    config = config_lib.to_dict(fine.config)
    assert meta["tile_step"] == "0.0" and loaded.tile_step == 0.0
    assert meta["flip_tta"] == "False" and loaded.flip_tta is False
    assert meta["box_scales"] == "[1.0]" and loaded.box_scales == (1.0,)
    config["data"]["crop_tiles"] = 3
    config["inference"]["tile_step"] = 0.5
    config["inference"]["flip_tta"] = True
    config["inference"]["box_scales"] = (1.0, 1.2)
    tiled = dataclasses.replace(fine, config=config_lib.from_dict(config))
    meta = export.metadata(tiled)
    assert (meta["crop_tiles"], meta["crop_tile_overlap"]) == ("3", "0.25")
    assert (meta["tile_step"], meta["flip_tta"]) == ("0.5", "True")
    model = tiled.cascade_model()
    assert (model.crop_tiles, model.crop_tile_overlap, model.tile_step) == (3, 0.25, 0.5)
    assert model.flip_tta and model.box_scales == (1.0, 1.2)
    assert meta["box_scales"] == "[1.0, 1.2]"
    config["inference"]["box_scales"] = ()
    with pytest.raises(ValueError, match=r"config\.inference\.box_scales is \[\]"):
        export.metadata(dataclasses.replace(fine, config=config_lib.from_dict(config)))
    config["inference"]["box_scales"] = (1.0,)
    config["inference"]["tile_step"] = -0.5
    with pytest.raises(ValueError, match=r"config\.inference\.tile_step is -0\.5"):
        export.metadata(dataclasses.replace(fine, config=config_lib.from_dict(config)))
