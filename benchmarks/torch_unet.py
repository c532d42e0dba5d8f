"""The lumbar_jax 3D U-Net and its train step in PyTorch, as a speed reference.

Same layers as ``lumbar_jax.model.UNet3D``: per level two (3x3x3 conv without bias, GroupNorm
with gcd(8, channels) groups and epsilon 1e-6 as in Flax, ReLU), max pooling by the level's
factors, a transposed convolution (kernel = stride = the pool factors, with bias) up, the skip
concatenated first, and a 1x1x1 head with bias. The loss is softmax cross-entropy plus soft
Dice over the foreground classes (every class labelled, as in the benchmarks' random batches),
and the optimizer Adam. Tensors are channels-first (NCDHW), PyTorch's native layout.

Needs the optional extra: ``pip install -e '.[torch]'`` (torch==2.13.0, the CPU build here).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - PyTorch's convention
from torch import nn


class ConvNormAct(nn.Sequential):
    """3x3x3 convolution (no bias: GroupNorm follows), GroupNorm, ReLU."""

    def __init__(self, cin: int, cout: int, num_groups: int) -> None:
        super().__init__(
            nn.Conv3d(cin, cout, 3, padding=1, bias=False),
            nn.GroupNorm(math.gcd(num_groups, cout), cout, eps=1e-6),
            nn.ReLU(inplace=True),
        )


class TorchUNet3D(nn.Module):
    """The U-Net of lumbar_jax.model.UNet3D (norm="group") in PyTorch.

    Args:
      num_classes: output channels.
      base_filters: channels of the first level, doubled at every level below.
      pool_factors: (d, h, w) pooling factor of each encoder level.
      num_groups: GroupNorm groups (gcd with the channels, as in lumbar_jax).
    """

    def __init__(
        self,
        num_classes: int = 6,
        base_filters: int = 32,
        pool_factors: Sequence[Sequence[int]] = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)),
        num_groups: int = 8,
    ) -> None:
        super().__init__()
        self.pool_factors = [tuple(f) for f in pool_factors]
        widths = [base_filters * 2**level for level in range(len(self.pool_factors))]
        self.enc = nn.ModuleList()
        cin = 1
        for width in widths:
            self.enc.append(self._double(cin, width, num_groups))
            cin = width
        self.bottleneck = self._double(cin, 2 * cin, num_groups)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        cin = 2 * cin
        for level in reversed(range(len(widths))):
            factors = self.pool_factors[level]
            self.up.append(nn.ConvTranspose3d(cin, widths[level], factors, stride=factors))
            self.dec.append(self._double(2 * widths[level], widths[level], num_groups))
            cin = widths[level]
        self.head = nn.Conv3d(cin, num_classes, 1)

    @staticmethod
    def _double(cin: int, cout: int, num_groups: int) -> nn.Sequential:
        """A level's two conv blocks."""
        return nn.Sequential(
            ConvNormAct(cin, cout, num_groups), ConvNormAct(cout, cout, num_groups)
        )

    def forward(self, image_bcdhw: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes, D, H, W), float32, of an image batch (B, 1, D, H, W)."""
        x = image_bcdhw
        skips = []
        for block, factors in zip(self.enc, self.pool_factors, strict=True):
            x = block(x)
            skips.append(x)
            x = F.max_pool3d(x, factors, factors)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(torch.cat([skip, up(x)], dim=1))
        return self.head(x).float()


def segmentation_loss(logits_bcdhw: torch.Tensor, label_bdhw: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus mean (1 - soft Dice) over foreground classes, every class labelled."""
    logits = logits_bcdhw.float()
    ce = F.cross_entropy(logits, label_bdhw)
    probs = logits.softmax(dim=1)[:, 1:]
    one_hot = F.one_hot(label_bdhw, logits.shape[1]).permute(0, 4, 1, 2, 3)[:, 1:].float()
    dims = (2, 3, 4)
    intersection = (probs * one_hot).sum(dims)
    denominator = probs.sum(dims) + one_hot.sum(dims)
    dice = (2 * intersection + 1e-5) / (denominator + 1e-5)
    return ce + (1 - dice).mean()


def num_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_from_config(config) -> TorchUNet3D:
    """The reference model for a lumbar_jax config (``config.model`` with norm="group")."""
    if config.model.norm != "group":
        raise ValueError(f"The reference has GroupNorm only, not {config.model.norm!r}.")
    return TorchUNet3D(
        config.data.num_classes,
        config.model.base_filters,
        config.model.pool_factors,
        config.model.num_groups,
    )


class TrainStep:
    """An eager train step (forward, loss, backward, Adam) on fixed random data, timed per call.

    Args:
      config: a lumbar_jax config; its model and input shape are used.
      batch_size: samples per step.
      dtype: "float32", or "bfloat16" (``torch.autocast`` on CPU: convolutions in bfloat16,
        parameters and the loss float32, like lumbar_jax's bfloat16 compute).
      seed: seed of the parameters and data.
    """

    def __init__(self, config, batch_size: int, dtype: str, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = model_from_config(config)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.optim.learning_rate)
        shape = tuple(config.data.input_shape)
        rng = np.random.default_rng(seed)
        self.image = torch.from_numpy(rng.random((batch_size, 1, *shape), np.float32))
        self.label = torch.from_numpy(
            rng.integers(0, config.data.num_classes, (batch_size, *shape))
        )
        self.autocast = dtype == "bfloat16"
        self.info = {
            "framework": "pytorch",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "dtype": dtype,
            "batch": batch_size,
            "input_shape": list(shape),
            "params": num_params(self.model),
        }

    def __call__(self) -> float:
        """Runs one step; returns the loss."""
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.model(self.image)
        loss = segmentation_loss(logits, self.label)
        loss.backward()
        self.optimizer.step()
        return loss.item()  # waits for the step, as block_until_ready does in JAX


def summary(info: dict, times: list[float]) -> dict:
    """``info`` with the median step time, samples/s and every step time."""
    median = statistics.median(times)
    return {
        **info,
        "step_s_median": median,
        "samples_per_s": info["batch"] / median,
        "step_s_all": [round(t, 4) for t in times],
    }


def output_shape(config, batch_size: int = 1) -> tuple[int, ...]:
    """Logits shape in lumbar_jax's channels-last order, for comparison with the JAX model."""
    model = model_from_config(config)
    with torch.no_grad():
        out = model(torch.zeros(batch_size, 1, *config.data.input_shape))
    b, c, d, h, w = out.shape
    return (b, d, h, w, c)
