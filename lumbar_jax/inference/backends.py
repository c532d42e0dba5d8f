"""One loader for a cascade whatever runs its networks: JAX (a run) or onnxruntime (.onnx)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from lumbar_jax.data import transforms
from lumbar_jax.inference import cascade

BACKENDS = ("auto", "jax", "onnx")


@dataclasses.dataclass
class LoadedCascade:
    """Both stages, ready for ``cascade.predict``, and where they came from.

    Attributes:
      coarse, fine: the stages as the cascade uses them.
      backend: "jax" or "onnx".
      runs: what the reports say about the models ({"coarse_run": ..., "fine_run": ...} or
        {"coarse_model": ..., "fine_model": ...}).
      stages: the JAX stages (config, parameters; for export), None with onnxruntime.
    """

    coarse: cascade.StageModel
    fine: cascade.StageModel
    backend: str
    runs: dict[str, str]
    stages: tuple | None = None

    def description(self) -> dict[str, str]:
        return {"backend": self.backend, **self.runs}

    def with_background_scale(self, scale: float | Sequence[float] | None) -> LoadedCascade:
        """This cascade deciding the fine stage's labels with other background scales (one
        for all structures or one each, ``cascade.decide``); ``None``: the fine run's own."""
        if scale is None:
            return self
        scales = cascade.check_background_scale(scale, "background_scale")
        fine = dataclasses.replace(self.fine, background_scale=scales)
        return dataclasses.replace(self, fine=fine)

    def with_tile_step(self, step: float | None) -> LoadedCascade:
        """This cascade placing the fine stage's tiles at most ``step`` of a tile apart
        (``transforms.sliding_tiles``; 0: as in training); ``None``: the fine run's own."""
        if step is None:
            return self
        if not 0.0 <= step <= 1.0:
            raise ValueError(f"tile_step must be in [0, 1], got {step}.")
        return dataclasses.replace(self, fine=dataclasses.replace(self.fine, tile_step=step))

    def with_box_scales(self, scales: list[float] | None) -> LoadedCascade:
        """This cascade predicting each fine tile at these in-plane box scales too
        (``transforms.scaled_boxes``); ``None``: the fine run's own."""
        if scales is None:
            return self
        scales = transforms.check_box_scales(scales, "box_scales")
        return dataclasses.replace(self, fine=dataclasses.replace(self.fine, box_scales=scales))

    def with_flip_tta(self, flip: bool | None) -> LoadedCascade:
        """This cascade with or without left-right flip test-time augmentation; ``None``: as
        the fine run says."""
        if flip is None:
            return self
        return dataclasses.replace(self, fine=dataclasses.replace(self.fine, flip_tta=flip))


def resolve_backend(backend: str, coarse_path: str | Path, fine_path: str | Path) -> str:
    """``auto``: onnxruntime for two ``.onnx`` files, JAX for run folders or checkpoints."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose one of {BACKENDS}.")
    if backend != "auto":
        return backend
    suffixes = {Path(p).suffix.lower() for p in (coarse_path, fine_path)}
    if suffixes == {".onnx"}:
        return "onnx"
    if ".onnx" in suffixes:
        raise ValueError(
            f"{coarse_path}, {fine_path}: one .onnx model and one run; give both stages in the "
            "same form."
        )
    return "jax"


def load_cascade(
    coarse_path: str | Path, fine_path: str | Path, backend: str = "auto"
) -> LoadedCascade:
    """The coarse and fine stages, checked to belong together.

    Raises:
      ValueError: (``StageLoadError``, ``OnnxModelError``) naming the path, when a stage
        cannot be loaded, is of the other stage, or the two do not match.
    """
    backend = resolve_backend(backend, coarse_path, fine_path)
    if backend == "onnx":
        from lumbar_jax.inference import onnx_stage  # onnxruntime and numpy only

        (coarse, fine), meta = onnx_stage.load_stages(coarse_path, fine_path)
        runs = {
            f"{name}_model": f"{path} (config {meta[name]['config_sha256'][:12]}, "
            f"step {meta[name]['checkpoint_step']})"
            for name, path in (("coarse", coarse_path), ("fine", fine_path))
        }
        return LoadedCascade(coarse, fine, "onnx", runs)
    from lumbar_jax.inference import jax_stage  # JAX only when it runs the networks

    coarse_stage, fine_stage = jax_stage.load_stages(coarse_path, fine_path)
    runs = {
        "coarse_run": f"{coarse_stage.source} (step {coarse_stage.step})",
        "fine_run": f"{fine_stage.source} (step {fine_stage.step})",
    }
    return LoadedCascade(
        coarse_stage.cascade_model(),
        fine_stage.cascade_model(),
        "jax",
        runs,
        (coarse_stage, fine_stage),
    )
