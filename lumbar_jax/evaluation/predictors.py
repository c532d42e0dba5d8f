"""Predictors for the evaluator: one network in its input space, or the whole cascade."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lumbar_jax.evaluation.evaluator import EvalCase, Predictor
from lumbar_jax.inference import cascade
from lumbar_jax.model import make_model


def _argmax_labels(params: Any, image_bdhwc: jnp.ndarray, *, model) -> jnp.ndarray:
    logits = model.apply({"params": params}, image_bdhwc)
    return jnp.argmax(logits, axis=-1).astype(jnp.uint8)


class NetworkPredictor:
    """A config's network on network-space samples; compiled once, given parameters per call.

    ``NetworkPredictor(config)(params)`` is a predictor returning the stage "network".
    """

    def __init__(self, config: ml_collections.ConfigDict):
        self._labels = jax.jit(functools.partial(_argmax_labels, model=make_model(config)))

    def __call__(self, params: Any) -> Predictor:
        def predict(case: EvalCase) -> dict[str, np.ndarray]:
            return {"network": np.asarray(self._labels(params, case.image[None]))[0]}

        return predict


def cascade_predictor(
    coarse: cascade.StageModel, fine: cascade.StageModel, flip_lr: bool | None = None
) -> Predictor:
    """The cascade on whole series: the stages "coarse" (alone) and "cascade" (``flip_lr``
    None: as the fine stage's ``flip_tta`` says)."""

    def predict(case: EvalCase) -> dict[str, np.ndarray]:
        result = cascade.predict(
            coarse, fine, case.image, case.spacing_dhw, flip_lr=flip_lr, source=case.source
        )
        return {"coarse": result.coarse_labels_dhw, "cascade": result.labels_dhw}

    return predict
