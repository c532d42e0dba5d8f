"""Per-layer time of the U-Net's conv blocks, lumbar_jax against PyTorch, forward plus backward.

  python -m benchmarks.layers --config=fine:cpu --batch=2 [--impls=onednn,stack2d,xla]

Every 3x3x3 conv block of the U-Net (convolution, GroupNorm, ReLU) at its own shape, timed
forward and backward (gradients of the input and the parameters) as a jitted function per
conv implementation and dtype, and the same block in PyTorch eager (float32, and bfloat16
under autocast). Shows where a train step's time goes and which layers limit the JAX/PyTorch
ratio.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags

from benchmarks import common
from benchmarks.render import table
from lumbar_jax import config as config_lib
from lumbar_jax.model.unet3d import ConvNormAct

TITLE = "Per layer: conv block (conv, GroupNorm, ReLU) forward + backward"
DTYPES = ("float32", "bfloat16")
REPEATS = 3

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command line's flags (only when run as a program; see train_step.py)."""
    flags.DEFINE_string("config", "fine:cpu", "Config NAME[:ARG] or path.")
    flags.DEFINE_integer("batch", 2, "Batch size.")
    flags.DEFINE_list("impls", ["onednn", "stack2d"], "JAX conv implementations to time.")
    flags.DEFINE_integer("repeats", REPEATS, "Timed calls per layer (median).")


def conv_layers(config: ml_collections.ConfigDict) -> list[dict]:
    """Every conv block of the config's U-Net: name, spatial shape, input and output channels."""
    base, factors = config.model.base_filters, [tuple(f) for f in config.model.pool_factors]
    shape = list(config.data.input_shape)
    shapes = []
    for f in factors:
        shapes.append(tuple(shape))
        shape = [s // k for s, k in zip(shape, f, strict=True)]
    layers = []
    for level, dhw in enumerate(shapes):
        width = base * 2**level
        layers.append({"name": f"enc{level}.block0", "dhw": dhw, "cin": width // 2 if level else 1})
        layers.append({"name": f"enc{level}.block1", "dhw": dhw, "cin": width})
        for layer in layers[-2:]:
            layer["cout"] = width
    width = base * 2 ** len(factors)
    layers.append({"name": "bottleneck.block0", "dhw": tuple(shape), "cin": width // 2})
    layers.append({"name": "bottleneck.block1", "dhw": tuple(shape), "cin": width})
    for layer in layers[-2:]:
        layer["cout"] = width
    for level in reversed(range(len(factors))):
        width = base * 2**level
        dhw = shapes[level]
        layers.append({"name": f"dec{level}.block0", "dhw": dhw, "cin": 2 * width, "cout": width})
        layers.append({"name": f"dec{level}.block1", "dhw": dhw, "cin": width, "cout": width})
    return layers


def time_jax_block(
    layer: dict,
    batch: int,
    config: ml_collections.ConfigDict,
    impl: str,
    dtype: str,
    repeats: int,
) -> float:
    """Median seconds for forward + backward of one ConvNormAct block, jitted."""
    module = ConvNormAct(
        layer["cout"], config.model.norm, config.model.num_groups, impl, jnp.dtype(dtype)
    )
    x = jax.random.normal(jax.random.key(0), (batch, *layer["dhw"], layer["cin"]), dtype)
    # A decoder's first block takes the skip connection and the up-convolution's output as
    # two inputs, as in the model (Conv3D convolves them without concatenating).
    parts = (
        jnp.split(x, 2, axis=-1)
        if layer["name"].startswith("dec") and layer["name"].endswith("block0")
        else [x]
    )
    params = module.init(jax.random.key(1), *parts)

    def loss(params, parts):
        return jnp.sum(jnp.square(module.apply(params, *parts).astype(jnp.float32)))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return common.median_time(lambda: jax.block_until_ready(grad(params, parts)), repeats)


def time_torch_block(
    layer: dict, batch: int, config: ml_collections.ConfigDict, dtype: str, repeats: int
) -> float:
    """Median seconds for forward + backward of the same block in PyTorch eager."""
    import torch

    from benchmarks.torch_unet import ConvNormAct as TorchConvNormAct

    block = TorchConvNormAct(layer["cin"], layer["cout"], config.model.num_groups)
    x = torch.randn(batch, layer["cin"], *layer["dhw"], requires_grad=True)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            y = block(x)
        y.float().square().sum().backward()

    return common.median_time(step, repeats)


def time_layers(
    config: ml_collections.ConfigDict,
    batch: int,
    impls: Sequence[str],
    dtypes: Sequence[str],
    repeats: int,
    torch_ok: bool,
) -> list[dict]:
    """One row per conv block with the JAX time per impl and dtype and the PyTorch times.

    All JAX blocks are timed before the PyTorch ones, whose OpenMP threads keep spinning for
    a while after each call.
    """
    rows = []
    for layer in conv_layers(config):
        voxels = batch * math.prod(layer["dhw"])
        row = {
            "layer": layer["name"],
            "shape_bdhwc_in": [batch, *layer["dhw"], layer["cin"]],
            "cout": layer["cout"],
            # forward 2 FLOPs per MAC, backward twice the forward.
            "conv_flops": 3 * 2 * 27 * voxels * layer["cin"] * layer["cout"],
        }
        for dtype in dtypes:
            for impl in impls:
                row[f"jax_{impl}_{dtype}_s"] = time_jax_block(
                    layer, batch, config, impl, dtype, repeats
                )
        rows.append(row)
        print(json.dumps(row), flush=True)
    if torch_ok:
        for layer, row in zip(conv_layers(config), rows, strict=True):
            for dtype in dtypes:
                row[f"torch_{dtype}_s"] = time_torch_block(layer, batch, config, dtype, repeats)
            print(json.dumps(row), flush=True)
    return rows


def run(spec: dict, with_torch: bool = False, overrides: Mapping[str, str] | None = None) -> dict:
    """Every conv block of a config timed in float32 and bfloat16 (``time_layers``).

    Args:
      spec: ``config`` (a name), ``batch`` and ``impls`` (JAX conv implementations).
      with_torch: also time the PyTorch blocks (torch must be installed).
      overrides: config overrides (tests shrink the model with them).

    Returns:
      ``{"config", "batch", "impls", "dtypes", "rows"}``, one row per block.
    """
    config = common.load_config(spec["config"], overrides)
    rows = time_layers(config, spec["batch"], spec["impls"], DTYPES, REPEATS, with_torch)
    return {**spec, "dtypes": list(DTYPES), "rows": rows}


def markdown(result: dict) -> str:
    """A table with one column per timed variant and the JAX/PyTorch ratio per dtype."""
    rows, impls, dtypes = result["rows"], result["impls"], result["dtypes"]
    cols = [f"jax_{i}_{d}_s" for d in dtypes for i in impls] + [f"torch_{d}_s" for d in dtypes]
    cols = [c for c in cols if c in rows[0]]
    header = ["layer", "input (b,d,h,w,c)", "out c"] + [c[:-2] + " (ms)" for c in cols]
    ratio_cols = [d for d in dtypes if f"torch_{d}_s" in rows[0]]
    header += [f"JAX {impls[0]}/PyTorch {d}" for d in ratio_cols]
    cells = []
    for r in rows:
        cells.append(
            [r["layer"], "x".join(map(str, r["shape_bdhwc_in"])), str(r["cout"])]
            + [f"{1000 * r[c]:.1f}" for c in cols]
            + [f"{r[f'jax_{impls[0]}_{d}_s'] / r[f'torch_{d}_s']:.2f}" for d in ratio_cols]
        )
    totals = {c: sum(r[c] for r in rows) for c in cols}
    cells.append(
        ["all conv blocks", "", ""]
        + [f"{1000 * totals[c]:.1f}" for c in cols]
        + [f"{totals[f'jax_{impls[0]}_{d}_s'] / totals[f'torch_{d}_s']:.2f}" for d in ratio_cols]
    )
    return "\n".join(table(header, cells)) + "\n"


def main(argv: list[str]) -> None:
    del argv
    config = config_lib.load_config(FLAGS.config)
    torch_ok = common.torch_available()
    rows = time_layers(config, FLAGS.batch, FLAGS.impls, DTYPES, FLAGS.repeats, torch_ok)
    print(markdown({"impls": FLAGS.impls, "dtypes": list(DTYPES), "rows": rows}))


if __name__ == "__main__":
    define_flags()
    app.run(main)
