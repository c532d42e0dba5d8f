"""Running exported stages with onnxruntime and numpy only (no JAX import).

An exported model (``lumbar_jax.export.onnx``) carries what inference needs in its metadata_props:
input shape and axis convention, window percentiles, crop margin, label names, the project
version and the training config's hash, so a deployment needs the .onnx files and nothing
else.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lumbar_jax.data import transforms
from lumbar_jax.inference import cascade

INPUT_NAME = "image_bdhwc"
OUTPUT_NAME = "logits_bdhwc"


class OnnxModelError(ValueError):
    """An .onnx file that cannot serve as a stage; the message names the file."""


def read_metadata(session) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def session(path: str | Path, threads: int = 0):
    """An onnxruntime CPU session of an exported stage.

    Raises:
      OnnxModelError: for a missing or unreadable file, or one not exported by lumbar_jax.
    """
    import onnxruntime as ort  # an optional dependency: the onnx extra

    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: no such ONNX model file.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise OnnxModelError(f"{path}: not a loadable ONNX model ({e}).") from e
    if "lumbar_jax_version" not in read_metadata(sess):
        raise OnnxModelError(f"{path}: not a lumbar_jax export (no lumbar_jax metadata).")
    return sess


def load_stage(path: str | Path, threads: int = 0) -> tuple[cascade.StageModel, dict]:
    """(the stage for ``cascade.predict``, its metadata) of an exported .onnx file."""
    sess = session(path, threads)
    meta = read_metadata(sess)

    def probabilities(image_bdhwc: np.ndarray) -> np.ndarray:
        (logits,) = sess.run([OUTPUT_NAME], {INPUT_NAME: image_bdhwc.astype(np.float32)})
        return softmax(logits)

    model = cascade.StageModel(
        tuple(json.loads(meta["input_shape_dhw"])),
        tuple(json.loads(meta["crop_margin_mm"])),
        tuple(json.loads(meta["window_percentiles"])),
        probabilities,
        # Exports before it: the argmax; before per-structure scales: one number.
        cascade.check_background_scale(
            json.loads(meta.get("background_scale", "1.0")), f"{path}: metadata background_scale"
        ),
        int(meta.get("crop_tiles", 1)),  # exports before tiles: one crop
        float(meta.get("crop_tile_overlap", 0.0)),
        float(meta.get("tile_step", 0.0)),  # exports before it: the training's tiles
        meta.get("flip_tta", "False") == "True",
        # Exports before it: the tiles alone.
        transforms.check_box_scales(
            json.loads(meta.get("box_scales", "[1.0]")), f"{path}: metadata box_scales"
        ),
    )
    return model, meta


def load_stages(coarse_path: str | Path, fine_path: str | Path) -> tuple[tuple, dict]:
    """((coarse, fine) stages, {"coarse": metadata, "fine": metadata}), checked to match.

    Raises:
      OnnxModelError: naming the file, when a model is of the other stage.
    """
    coarse, coarse_meta = load_stage(coarse_path)
    fine, fine_meta = load_stage(fine_path)
    for meta, want, path in ((coarse_meta, "coarse", coarse_path), (fine_meta, "fine", fine_path)):
        if meta.get("stage") != want:
            raise OnnxModelError(
                f"{path}: a {meta.get('stage')!r} model given as the {want} stage."
            )
    return (coarse, fine), {"coarse": coarse_meta, "fine": fine_meta}
