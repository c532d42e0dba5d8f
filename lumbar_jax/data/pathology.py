"""Occasional pathology of the phantom: disc herniations and Schmorl nodes.

Disc degeneration and posterior bulges are per-disc numbers kept in ``phantom.Phantom``; the
focal findings here have a shape of their own, in the frame of their disc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lumbar_jax.data.phantom import Segment


@dataclass
class Herniation:
    """Focal disc material behind a disc's posterior margin, in the disc's frame (mm).

    ``u`` shifts it along the spine (migration up, negative, or down), ``depth`` is how far it
    reaches into the canal, ``x`` its left-right centre (paramedian, toward a lateral recess).
    """

    disc: str
    x: float
    u: float
    depth: float
    half_u: float
    half_x: float


@dataclass
class SchmorlNode:
    """Disc material through an endplate into a vertebral body, in the disc's frame (mm).

    ``side`` -1 goes up into the body above the disc, +1 down into the body below.
    """

    disc: str
    side: int
    v: float
    x: float
    depth: float
    radius: float


def draw_herniation(rng: np.random.Generator, disc: Segment) -> Herniation:
    """A random herniation of ``disc`` (paramedian, possibly migrated)."""
    return Herniation(
        disc=disc.name,
        x=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.0, 5.0)),
        u=rng.uniform(-4.0, 4.0),
        depth=rng.uniform(3.0, 7.0),
        half_u=disc.half_height + rng.uniform(0.5, 3.0),
        half_x=rng.uniform(3.5, 7.0),
    )


def draw_schmorl(rng: np.random.Generator, disc: Segment, side: int) -> SchmorlNode:
    """A random Schmorl node of ``disc`` into the body above (-1) or below (+1)."""
    return SchmorlNode(
        disc=disc.name,
        side=side,
        v=rng.uniform(-0.4, 0.4) * disc.half_depth,
        x=rng.uniform(-0.3, 0.3) * disc.half_width,
        depth=rng.uniform(2.5, 6.0),
        radius=rng.uniform(2.0, 4.5),
    )
