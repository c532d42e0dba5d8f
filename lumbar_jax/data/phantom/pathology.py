"""Occasional pathology of the phantom: disc herniations and Schmorl nodes.

Disc degeneration and posterior bulges are per-disc numbers kept in ``anatomy.Phantom``; the
focal findings here have a shape of their own, in the frame of their disc.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lumbar_jax.data.phantom.plane import Plane
from lumbar_jax.data.phantom.spine import Segment, wedge
from lumbar_jax.data.phantom.tissues import ID as T
from lumbar_jax.labels import BODY, DISC


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


def paint(
    plane: Plane,
    x: float,
    y: np.ndarray,
    z: np.ndarray,
    discs: dict[str, Segment],
    bulge: dict[str, float],
    schmorl_nodes: list[SchmorlNode],
    herniations: list[Herniation],
) -> None:
    """Draws Schmorl nodes and herniations on one plane, last: they displace what was there.

    Args:
      plane: the plane being drawn, changed in place.
      x: the plane's left-right position (mm).
      y, z: the plane's superior-inferior and anterior-posterior coordinates (mm).
      discs: the spine's discs by name.
      bulge: each disc's diffuse posterior bulge (mm).
      schmorl_nodes, herniations: the case's focal findings.
    """
    for node in schmorl_nodes:
        s = discs[node.disc]
        if abs(x - node.x) >= node.radius + 1.2:
            continue
        u, v = s.local(y, z)
        endplate = node.side * s.half_height * wedge(s, node.v)

        def ball(grow, node=node, u=u, v=v, endplate=endplate):
            return (
                ((u - endplate) / (node.depth + grow)) ** 2
                + ((v - node.v) / (node.radius + grow)) ** 2
                + ((x - node.x) / (node.radius + grow)) ** 2
            ) <= 1.0

        in_body = plane.label == BODY
        inside = ball(0.0) & in_body
        # A sclerotic, dark rim where the endplate folds into the body.
        plane.paint(ball(1.2) & in_body & ~inside, 0.08, T["body_cortex_endplate"])
        nucleus = T["degenerate_nucleus"] if s.degenerate else T["nucleus"]
        plane.paint(inside, 0.32 if s.degenerate else 0.7, nucleus, DISC)
    for h in herniations:
        s = discs[h.disc]
        if abs(x - h.x) >= h.half_x + 0.8:
            continue
        u, v = s.local(y, z)
        wall = s.half_depth + bulge[h.disc]

        def blob(grow, h=h, u=u, v=v, wall=wall):
            return (
                ((u - h.u) / (h.half_u + grow)) ** 2
                + ((v - wall) / (h.depth + grow)) ** 2
                + ((x - h.x) / (h.half_x + grow)) ** 2
            ) <= 1.0

        # Only behind the disc margin, and never through bone.
        where = (v > wall - 2.0) & (plane.label != BODY)
        inner = blob(0.0) & where
        # The stretched posterior ligament and outer annulus: a thin dark line on the
        # herniation's back, between it and the CSF. Disc material too.
        shell = blob(0.8) & where & ~inner
        plane.paint(shell, 0.15, T["outer_annulus"], DISC)
        plane.paint(inner, 0.35 if s.degenerate else 0.5, T["herniation"], DISC)
