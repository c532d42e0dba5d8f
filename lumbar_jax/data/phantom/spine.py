"""The spinal column of the phantom: vertebral bodies and discs along a lordotic curve.

Each body and disc is a ``Segment``: a blocky cylinder (``superellipsoid``) with its centre
and axis in the sagittal plane, in patient millimetres (y superior to inferior, z anterior to
posterior, x left-right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Levels from the top of the field of view; T10/T11 are often cut by it.
LEVELS = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2", "S3")


@dataclass
class Segment:
    """A vertebral body or disc: centre (y, z) in mm, axis tilt, half sizes in mm."""

    name: str
    kind: str  # "body" or "disc"
    cy: float
    cz: float
    theta: float  # radians from the superior-inferior axis; positive tilts posterior going down
    half_height: float
    half_depth: float  # anterior-posterior
    half_width: float  # left-right
    degenerate: bool = False  # discs: desiccated (dark nucleus) and narrowed

    def local(self, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u along the axis, v toward posterior) of plane points, in mm."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        dy, dz = y - self.cy, z - self.cz
        return dy * c + dz * s, -dy * s + dz * c


def build_spine(rng: np.random.Generator, top_y: float, z0: float) -> list[Segment]:
    lordosis = math.radians(rng.uniform(8.0, 22.0))
    sacral_tilt = math.radians(rng.uniform(30.0, 48.0))
    segments: list[Segment] = []
    y, z = top_y, z0
    lumbar_index = {name: i for i, name in enumerate(LEVELS)}
    for name in LEVELS:
        i = lumbar_index[name]
        sacral = name.startswith("S")
        if sacral:
            theta = sacral_tilt
            half_height = {"S1": 13.0, "S2": 11.0, "S3": 9.0}[name] * rng.uniform(0.9, 1.1)
            half_depth = {"S1": 17.0, "S2": 13.0, "S3": 10.0}[name] * rng.uniform(0.9, 1.1)
        else:
            # Lordosis: the column leans anterior above L3 and posterior below.
            t = (i - 1) / 6.0
            theta = -lordosis * (1.0 - 2.0 * t)
            thoracic = name.startswith("T")
            half_height = (11.0 if thoracic else 13.0) * rng.uniform(0.9, 1.1)
            half_depth = (14.0 if thoracic else 17.0) * rng.uniform(0.9, 1.1)
        direction = np.array([math.cos(theta), math.sin(theta)])
        cy, cz = np.array([y, z]) + half_height * direction
        segments.append(
            Segment(name, "body", cy, cz, theta, half_height, half_depth, half_depth * 1.35)
        )
        y, z = np.array([cy, cz]) + half_height * direction
        if name in ("S1", "S2", "S3"):
            y, z = np.array([y, z]) + 1.0 * direction  # fused sacral segments: no disc
            continue
        disc_half = (3.0 if name.startswith("T") else 4.5) * rng.uniform(0.8, 1.15)
        # Degeneration is commonest at the lowest lumbar levels; it narrows the disc space.
        p_degenerate = 0.25 if name in ("L4", "L5") else 0.03 if name.startswith("T") else 0.07
        degenerate = rng.random() < p_degenerate
        if degenerate:
            disc_half *= rng.uniform(0.55, 0.8)
        theta_disc = 0.5 * (theta + sacral_tilt) if name == "L5" else theta
        direction = np.array([math.cos(theta_disc), math.sin(theta_disc)])
        cy, cz = np.array([y, z]) + disc_half * direction
        segments.append(
            Segment(
                f"{name}/{LEVELS[i + 1]}",
                "disc",
                cy,
                cz,
                theta_disc,
                disc_half,
                half_depth * 0.97,
                half_depth * 1.3,
                degenerate,
            )
        )
        y, z = np.array([cy, cz]) + disc_half * direction
    return segments


def superellipsoid(u, v, x, a, bv, bx, p=6.0):
    """Inside test of a blocky cylinder: flat ends at |u|=a, elliptical cross-section."""
    r = np.sqrt((v / bv) ** 2 + (x / bx) ** 2)
    return (np.abs(u) / a) ** p + r**p <= 1.0


def extend(a: tuple[float, float], b: tuple[float, float], length: float):
    """The point ``length`` mm beyond ``b`` on the line from ``a`` through ``b``."""
    dy, dz = b[0] - a[0], b[1] - a[1]
    norm = math.hypot(dy, dz) or 1.0
    return b[0] + length * dy / norm, b[1] + length * dz / norm


def wedge(disc: Segment, v):
    """Disc height factor along v: discs are taller anteriorly in a lordosis."""
    return 1.0 - 0.25 * np.clip(v / disc.half_depth, -1, 1) * np.sign(-disc.theta + 0.1)
