"""Checkpoint to ONNX with jax2onnx, verified against JAX with onnxruntime before it counts.

The graph computes logits (b, d, h, w, classes) of windowed images (b, d, h, w, 1) with a
dynamic batch dimension. Its 3x3x3 convolutions are exported in the ``stack2d`` form (one 2D
convolution over depth-stacked channels, the same parameters): jax2onnx lowers only 1D/2D
``conv_general_dilated``. The export is verified against the JAX model computed with plain
3D convolutions (``xla``), so the check also covers the rewrite. Whatever the training
dtype, the export computes in float32 (the parameters are float32 either way).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lumbar_jax import __version__, files
from lumbar_jax import config as config_lib
from lumbar_jax.data import transforms
from lumbar_jax.data.phantom import render
from lumbar_jax.inference import jax_stage, onnx_stage
from lumbar_jax.inference.jax_stage import Stage
from lumbar_jax.labels import LABEL_NAMES
from lumbar_jax.model import make_model

AXES = (
    "image_bdhwc: b batch (dynamic), d sagittal slices from patient right to left, h superior "
    "to inferior, w anterior to posterior, c = 1; intensities windowed to [0, 1] (see "
    "window_percentiles). logits_bdhwc: the same grid, one logit per class (softmax over the "
    "last axis; class names in label_names)."
)


class ExportError(ValueError):
    """An export that failed verification; no model file is left behind."""


@dataclasses.dataclass
class Verification:
    """Agreement of onnxruntime with JAX on one input."""

    name: str
    batch: int
    max_abs_diff: float
    logit_scale: float
    argmax_agreement: float

    def passed(self, tolerance: float, min_agreement: float) -> bool:
        return (
            self.max_abs_diff <= tolerance * max(1.0, self.logit_scale)
            and self.argmax_agreement >= min_agreement
        )


def config_hash(config) -> str:
    text = json.dumps(config_lib.to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _with_model(config, **model_fields):
    config = config_lib.to_dict(config)
    config["model"].update(model_fields)
    return config_lib.from_dict(config)


def _phantom_input(config, seed: int) -> np.ndarray:
    """One phantom series prepared as the stage sees it: (1, d, h, w, 1) float32."""
    case = render.render_case(seed, matrix=128)
    image, label, spacing = case.image_dhw, case.label_dhw, case.spacing_dhw
    shape = tuple(config.data.input_shape)
    if config.data.crop == "label":
        box = transforms.label_box(label, spacing, config.data.crop_margin_mm)
        count, overlap = transforms.crop_tiles(config.data)
        box = transforms.tile_boxes(box, count, overlap, shape)[count // 2]
    else:
        box = transforms.image_box(image.shape, spacing)
    windowed = transforms.auto_window(image, config.data.window_percentiles)
    affine = transforms.sampling_affine(box, shape, spacing)
    return transforms.resample(windowed, affine, shape, is_label=False)[None, ..., None]


def verification_inputs(config, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs at batch 1 and 3 (the dynamic dimension) and a phantom series."""
    rng = np.random.default_rng(seed)
    shape = tuple(config.data.input_shape)
    return {
        "random": rng.random((1, *shape, 1), np.float32),
        "random_batch3": rng.random((3, *shape, 1), np.float32),
        "phantom": _phantom_input(config, 10_000 + seed).astype(np.float32),
    }


def metadata(stage: Stage) -> dict[str, str]:
    """The metadata_props an exported model carries (all values strings)."""
    data = stage.config.data
    tiles, tile_overlap = transforms.crop_tiles(data)
    return {
        "lumbar_jax_version": __version__,
        "stage": str(stage.config.get("stage", "")),
        "input_name": onnx_stage.INPUT_NAME,
        "output_name": onnx_stage.OUTPUT_NAME,
        "input_shape_dhw": json.dumps(list(data.input_shape)),
        "axes": AXES,
        "window_percentiles": json.dumps(list(data.window_percentiles)),
        "crop": str(data.crop),
        "crop_margin_mm": json.dumps(list(data.crop_margin_mm)),
        "crop_tiles": str(tiles),
        "crop_tile_overlap": str(tile_overlap),
        "background_scale": json.dumps(list(jax_stage.background_scale_of(stage.config))),
        "tile_step": str(jax_stage.tile_step_of(stage.config)),
        "flip_tta": str(jax_stage.flip_tta_of(stage.config)),
        "box_scales": json.dumps(list(jax_stage.box_scales_of(stage.config))),
        "label_names": json.dumps(list(LABEL_NAMES)),
        "config_sha256": config_hash(stage.config),
        "config_json": json.dumps(config_lib.to_dict(stage.config), sort_keys=True),
        "checkpoint_step": str(stage.step),
        "trained_dtype": str(stage.config.model.dtype),
        "export_dtype": "float32",
    }


def export_stage(
    stage: Stage,
    output: str | Path,
    *,
    tolerance: float = 1e-3,
    min_agreement: float = 0.999,
    seed: int = 0,
) -> list[Verification]:
    """Exports a stage to ``output`` and verifies it; returns the verification figures.

    Args:
      stage: the trained stage.
      output: the .onnx file to write (its folder is created).
      tolerance: largest allowed |logit difference|, relative to max(1, largest |logit|).
        float32 convolutions summed in another order differ by ~1e-4 of the logit scale in
        the demo's trained models (on random input; less on images), hence 1e-3.
      min_agreement: smallest allowed fraction of voxels with the same argmax.
      seed: seed of the verification inputs.

    Raises:
      ExportError: when jax2onnx fails or onnxruntime disagrees with JAX; no file is left.
      OSError: when the output cannot be written.
    """
    import onnx  # the onnx extra
    from jax2onnx import to_onnx

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # nn.max_pool and nn.ConvTranspose ("xla" resampling) are what jax2onnx exports.
    export_config = _with_model(
        stage.config, conv_impl="stack2d", layer_impl="flax", dtype="float32", remat=False
    )
    reference_config = _with_model(
        stage.config, conv_impl="xla", layer_impl="flax", dtype="float32", remat=False
    )
    export_model = make_model(export_config)
    reference_model = make_model(reference_config)
    params = jax.tree.map(jnp.asarray, stage.params)

    def logits(image_bdhwc):
        return export_model.apply({"params": params}, image_bdhwc)

    shape = tuple(stage.config.data.input_shape)
    # onnx_ir warns about every shape tensor it serializes; that is not the user's concern.
    logging.getLogger("onnx_ir").setLevel(logging.ERROR)
    try:
        proto = to_onnx(
            logits,
            [("B", *shape, 1)],
            model_name=f"lumbar_jax_{stage.config.get('stage', 'unet')}",
            input_names=[onnx_stage.INPUT_NAME],
            output_names=[onnx_stage.OUTPUT_NAME],
        )
    except Exception as e:  # jax2onnx raises many kinds
        raise ExportError(f"{stage.source}: jax2onnx could not convert the model ({e}).") from e
    onnx.helper.set_model_props(proto, metadata(stage))

    with files.atomic_path(output) as tmp:
        onnx.save(proto, str(tmp))
        results = verify(onnx_stage.session(tmp), reference_model, params, stage.config, seed)
        failed = [r for r in results if not r.passed(tolerance, min_agreement)]
        if failed:
            raise ExportError(
                f"{output}: onnxruntime disagrees with JAX beyond tolerance {tolerance} "
                f"(relative to the logit scale) or argmax agreement {min_agreement}: "
                + "; ".join(
                    f"{r.name}: max |diff| {r.max_abs_diff:.2e} at logit scale "
                    f"{r.logit_scale:.1f}, agreement {r.argmax_agreement:.5f}"
                    for r in failed
                )
                + ". No model was written."
            )
    return results


def verify(sess, reference_model, params, config, seed: int = 0) -> list[Verification]:
    """onnxruntime's logits against the JAX reference model's on the verification inputs."""
    reference = jax.jit(lambda x: reference_model.apply({"params": params}, x))
    results = []
    for name, x in verification_inputs(config, seed).items():
        (got,) = sess.run([onnx_stage.OUTPUT_NAME], {onnx_stage.INPUT_NAME: x})
        want = np.asarray(reference(x))
        results.append(
            Verification(
                name,
                x.shape[0],
                float(np.abs(got - want).max()),
                float(np.abs(want).max()),
                float(np.mean(got.argmax(-1) == want.argmax(-1))),
            )
        )
    return results
