"""A trained stage for inference: its config, its parameters and a jitted probability map.

A stage is named by a run folder (``config.json`` + ``checkpoints/``) or by one checkpoint
inside it (``RUN/checkpoints/best/STEP`` or ``RUN/checkpoints/latest/STEP``).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lumbar_jax import config as config_lib
from lumbar_jax.checkpoint import Checkpoints
from lumbar_jax.data import transforms
from lumbar_jax.inference import cascade
from lumbar_jax.model import make_model, param_shapes


class StageLoadError(ValueError):
    """A run or checkpoint that cannot be loaded; the message names the path."""


@dataclasses.dataclass
class Stage:
    """A trained U-Net ready for inference.

    Attributes:
      config: the run's config (``config.json``).
      params: float32 parameters.
      source: the folder the parameters came from.
      step: the training step of those parameters.
    """

    config: ml_collections.ConfigDict
    params: Any
    source: Path
    step: int

    def __post_init__(self):
        self._probabilities = jax.jit(functools.partial(probabilities, config=self.config))

    def probabilities(self, image_bdhwc: np.ndarray) -> np.ndarray:
        """Softmax class probabilities (b, d, h, w, classes) float32 of windowed images."""
        return np.asarray(self._probabilities(self.params, jnp.asarray(image_bdhwc)))

    def cascade_model(self) -> cascade.StageModel:
        """This stage as the cascade uses it."""
        data = self.config.data
        return cascade.StageModel(
            tuple(data.input_shape),
            tuple(data.crop_margin_mm),
            tuple(data.window_percentiles),
            self.probabilities,
            background_scale_of(self.config),
            *transforms.crop_tiles(data),
            tile_step_of(self.config),
            flip_tta_of(self.config),
            box_scales_of(self.config),
        )


def background_scale_of(config: ml_collections.ConfigDict) -> tuple[float, ...]:
    """The run's ``inference.background_scale``, one per structure; 1 (the argmax) for runs
    saved without it (runs saved before per-structure scales hold one number).

    Raises:
      ValueError: naming the field, for a wrong number of scales or one outside (0, 1].
    """
    scale = config.get("inference", {}).get("background_scale", 1.0)
    return cascade.check_background_scale(scale, "config.inference.background_scale")


def tile_step_of(config: ml_collections.ConfigDict) -> float:
    """The run's ``inference.tile_step``; 0 (the training's tiles) for runs saved without it.

    Raises:
      ValueError: naming the field, for a value outside [0, 1].
    """
    step = float(config.get("inference", {}).get("tile_step", 0.0))
    if not 0.0 <= step <= 1.0:
        raise ValueError(f"config.inference.tile_step is {step}; it must be in [0, 1].")
    return step


def flip_tta_of(config: ml_collections.ConfigDict) -> bool:
    """The run's ``inference.flip_tta``; False for runs saved without it."""
    return bool(config.get("inference", {}).get("flip_tta", False))


def box_scales_of(config: ml_collections.ConfigDict) -> tuple[float, ...]:
    """The run's ``inference.box_scales``; (1.0,) (the tiles alone) for runs saved without it.

    Raises:
      ValueError: naming the field, for an empty list or a scale that is not positive.
    """
    scales = config.get("inference", {}).get("box_scales", (1.0,))
    return transforms.check_box_scales(scales, "config.inference.box_scales")


def probabilities(params: Any, image_bdhwc: jnp.ndarray, *, config) -> jnp.ndarray:
    logits = make_model(config).apply({"params": params}, image_bdhwc)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def _find_run(path: Path) -> tuple[Path, str | None, int | None]:
    """(run folder, "best"/"latest" or None, step or None) for a run or checkpoint path."""
    for candidate in (path, *path.parents[:3]):
        if (candidate / "config.json").is_file():
            relative = path.relative_to(candidate).parts
            if not relative:
                return candidate, None, None
            if relative[0] == "checkpoints":
                series = relative[1] if len(relative) > 1 else None
                step = relative[2] if len(relative) > 2 else None
                if series in (None, "best", "latest") and (step is None or step.isdigit()):
                    return candidate, series, None if step is None else int(step)
            break
    raise StageLoadError(
        f"{path}: not a run folder (with config.json) nor a checkpoint inside one "
        "(RUN/checkpoints/best/STEP or RUN/checkpoints/latest/STEP)."
    )


def load_stage(path: str | Path) -> Stage:
    """Loads a stage from a run folder (best checkpoint, else latest) or a checkpoint.

    Raises:
      StageLoadError: for a missing folder, a missing or unreadable config, no checkpoint, or
        parameters that do not match the config's model.
    """
    path = Path(path)
    if not path.exists():
        raise StageLoadError(f"{path}: no such run or checkpoint folder.")
    run, series, step = _find_run(path.resolve())
    try:
        config = config_lib.read_config(run / "config.json")
    except (ValueError, KeyError, TypeError) as e:
        raise StageLoadError(f"{run / 'config.json'}: unreadable run config ({e}).") from e
    template = param_shapes(config)
    ckpt = Checkpoints(run)
    try:
        if series is None:
            series = "best" if ckpt.best.latest_step() is not None else "latest"
        manager = ckpt.best if series == "best" else ckpt.latest
        if step is None:
            step = manager.latest_step()
        if step is None or step not in manager.all_steps():
            raise StageLoadError(f"{path}: no checkpoint found in {manager.directory}.")
        try:
            params = ckpt.restore_params(series, step, template)
        except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
            raise StageLoadError(
                f"{path}: cannot restore checkpoint {series}/{step}: corrupt, or not made "
                f"with {run / 'config.json'} ({str(e).splitlines()[0][:300]})."
            ) from e
    finally:
        ckpt.close()
    _check_params(params, template, path)
    return Stage(config, params, path, int(step))


def load_stages(coarse_path: str | Path, fine_path: str | Path) -> tuple[Stage, Stage]:
    """The coarse and fine stages of a cascade, checked to belong together.

    Raises:
      StageLoadError: when either cannot be loaded, a run is of the other stage, or the two
        predict different classes.
    """
    coarse, fine = load_stage(coarse_path), load_stage(fine_path)
    for stage, want in ((coarse, "coarse"), (fine, "fine")):
        if stage.config.get("stage") != want:
            raise StageLoadError(
                f"{stage.source}: a {stage.config.get('stage')!r} run given as the {want} stage."
            )
    if coarse.config.data.num_classes != fine.config.data.num_classes:
        raise StageLoadError(
            f"{coarse.source} predicts {coarse.config.data.num_classes} classes but "
            f"{fine.source} {fine.config.data.num_classes}."
        )
    return coarse, fine


def _check_params(params: Any, expected: Any, path: Path) -> None:
    got = jax.tree.map(np.shape, params)
    want = jax.tree.map(np.shape, expected)
    if got != want:
        raise StageLoadError(
            f"{path}: checkpoint parameters do not fit the model its config.json describes "
            "(was config.json edited or copied from another run?)."
        )
