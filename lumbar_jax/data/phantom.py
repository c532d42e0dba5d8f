"""The anatomy of a synthetic lumbar spine, drawn on sagittal planes in patient millimetres.

Vertebral bodies T10..S3 along a lordotic curve, discs with a bright nucleus and dark
endplates, the dural sac with bright CSF down to S2, the cord ending in the conus near L1 with
cauda equina roots below, foramina on para-sagittal slices between the pedicles, posterior
elements, muscle, fat, skin and vessels. ``synth.py`` turns planes into an acquired series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BODY, DISC, FORAMEN, CANAL, CORD = 1, 2, 3, 4, 5
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

    def local(self, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u along the axis, v toward posterior) of plane points, in mm."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        dy, dz = y - self.cy, z - self.cz
        return dy * c + dz * s, -dy * s + dz * c


def _build_spine(rng: np.random.Generator, top_y: float, z0: float) -> list[Segment]:
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
            )
        )
        y, z = np.array([cy, cz]) + disc_half * direction
    return segments


def _superellipsoid(u, v, x, a, bv, bx, p=6.0):
    """Inside test of a blocky cylinder: flat ends at |u|=a, elliptical cross-section."""
    r = np.sqrt((v / bv) ** 2 + (x / bx) ** 2)
    return (np.abs(u) / a) ** p + r**p <= 1.0


class Phantom:
    """One synthetic patient; ``render`` draws it on a canonical grid."""

    def __init__(self, rng: np.random.Generator, fov_mm: float):
        self.rng = rng
        self.fov = fov_mm
        top_y = rng.uniform(-0.12, 0.0) * fov_mm
        self.z_body = rng.uniform(0.42, 0.52) * fov_mm
        self.segments = _build_spine(rng, top_y, self.z_body)
        self.sac_rx = rng.uniform(7.0, 9.5)
        self.sac_rz = rng.uniform(5.5, 7.5)
        self.cord_rx, self.cord_rz = rng.uniform(4.0, 5.0), rng.uniform(3.0, 3.8)
        self.back_skin = self.z_body + rng.uniform(0.40, 0.48) * fov_mm
        self.fat = rng.uniform(10.0, 30.0)
        bodies = [s for s in self.segments if s.kind == "body"]
        self.bodies = {s.name: s for s in bodies}
        l1 = self.bodies["L1"]
        self.conus_y = l1.cy + rng.uniform(-0.5, 1.0) * l1.half_height
        s2 = self.bodies["S2"]
        self.sac_end_y = s2.cy + rng.uniform(-0.5, 0.3) * s2.half_height
        self.marrow = rng.uniform(0.38, 0.52)
        self.degenerate = {
            s.name for s in self.segments if s.kind == "disc" and rng.random() < 0.15
        }
        self.bulge = {
            s.name: rng.uniform(0, 4.0) if rng.random() < 0.3 else 0.0 for s in self.segments
        }
        self.root_offsets = rng.uniform(-1.0, 1.0, size=(8, 2))
        # Sac centreline: behind each segment's posterior wall, along its normal.
        pts = []
        for s in self.segments:
            off = s.half_depth + 2.0 + self.sac_rz
            pts.append((s.cy - off * math.sin(s.theta), s.cz + off * math.cos(s.theta)))
        pts.sort()
        self.sac_y = np.array([p[0] for p in pts])
        self.sac_z = np.array([p[1] for p in pts])

    def sac_center_z(self, y: np.ndarray) -> np.ndarray:
        return np.interp(y, self.sac_y, self.sac_z)

    def plane(self, x: float, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """T2 intensity and label on the sagittal plane at left-right position ``x`` (mm)."""
        inten = np.full(y.shape, 0.27, np.float32)  # muscle / abdominal soft tissue
        label = np.zeros(y.shape, np.uint8)
        rng_tex = np.random.default_rng(int(abs(x) * 1000) + 7)

        # Back: subcutaneous fat, skin, air beyond.
        inten[z > self.back_skin - self.fat] = 0.78
        inten[np.abs(z - self.back_skin) < 1.2] = 0.35
        inten[z > self.back_skin + 1.2] = 0.0

        # Great vessels anterior to the spine: dark flow voids.
        for vx, vr in ((-12.0, 9.0), (14.0, 10.0)):
            if abs(x - vx) < vr:
                r = math.sqrt(vr**2 - (x - vx) ** 2)
                zc = self.z_body - 26.0
                inten[(np.abs(z - zc) < r) & (y < self.bodies["L4"].cy)] = 0.05

        sac_z = self.sac_center_z(y)
        # Canal with epidural fat, wider than the sac.
        canal = (
            (x / (self.sac_rx + 2.5)) ** 2 + ((z - sac_z - 1.5) / (self.sac_rz + 3.0)) ** 2
        ) <= 1
        inten[canal & (y < self.sac_end_y + 25)] = 0.72

        for s in self.segments:
            if s.kind != "body":
                continue
            u, v = s.local(y, z)
            self._posterior_elements(x, s, u, v, inten)

        for s in self.segments:
            u, v = s.local(y, z)
            if s.kind == "body":
                inside = _superellipsoid(u, v, x, s.half_height, s.half_depth, s.half_width)
                bone = self.marrow * (1.0 + 0.06 * rng_tex.standard_normal(y.shape))
                inten[inside] = bone[inside]
                cortex = inside & ~_superellipsoid(
                    u, v, x, s.half_height - 1.2, s.half_depth - 1.2, s.half_width - 1.2
                )
                inten[cortex] = 0.08
                label[inside] = BODY
            else:
                wedge = 1.0 - 0.25 * np.clip(v / s.half_depth, -1, 1) * np.sign(-s.theta + 0.1)
                bulge = self.bulge[s.name]
                inside = _superellipsoid(
                    u / wedge,
                    v - bulge * 0.5,
                    x,
                    s.half_height,
                    s.half_depth + bulge * 0.5,
                    s.half_width,
                )
                inten[inside] = 0.3  # annulus
                nucleus = inside & _superellipsoid(
                    u / wedge,
                    v + 2.0,
                    x,
                    s.half_height * 0.8,
                    s.half_depth * 0.72,
                    s.half_width * 0.72,
                    3.0,
                )
                inten[nucleus] = 0.32 if s.name in self.degenerate else 0.85
                label[inside] = DISC

        self._foramina(x, y, z, inten, label)

        # Dural sac (CSF) down to S2, tapering at its end.
        taper = np.clip((self.sac_end_y - y) / 15.0, 0.0, 1.0) ** 0.5
        rx, rz = self.sac_rx * taper + 1e-3, self.sac_rz * taper + 1e-3
        sac = ((x / rx) ** 2 + ((z - sac_z) / rz) ** 2 <= 1) & (y < self.sac_end_y)
        inten[sac] = 0.97
        label[sac] = CANAL

        # Cord to the conus, then cauda equina roots lying dorsally.
        cone = np.clip((self.conus_y - y) / 18.0, 0.0, 1.0) ** 0.6
        crx, crz = self.cord_rx * cone + 1e-3, self.cord_rz * cone + 1e-3
        cord = ((x / crx) ** 2 + ((z - sac_z + 0.8) / crz) ** 2 <= 1) & (y < self.conus_y)
        roots = np.zeros(y.shape, bool)
        below = (y >= self.conus_y - 4.0) & (y < self.sac_end_y - 8.0)
        for k, (ox, oz) in enumerate(self.root_offsets):
            # Roots leave one pair per level, so fewer remain lower down.
            leaves_at = self.conus_y + (k + 1) * (self.sac_end_y - self.conus_y) / 9.0
            rx_k = ox * self.sac_rx * 0.6
            if abs(x - rx_k) < 1.0:
                zc = sac_z + self.sac_rz * (0.25 + 0.3 * abs(oz))
                roots |= (
                    below & (y < leaves_at) & (np.abs(z - zc) < math.sqrt(1.0 - (x - rx_k) ** 2))
                )
        inten[cord | roots] = 0.22
        label[cord | roots] = CORD
        return inten, label

    def _posterior_elements(self, x, s: Segment, u, v, inten) -> None:
        front = s.half_depth + 1.5
        canal_back = front + 2 * self.sac_rz + 5.0
        ax = abs(x)
        lateral = self.sac_rx + 1.5 <= ax <= self.sac_rx + 9.0
        if lateral:  # pedicle: upper part of the vertebra, bridging body and lamina
            pedicle = (
                (u > -s.half_height)
                & (u < 0.15 * s.half_height)
                & (v > front - 3)
                & (v < canal_back + 4)
            )
            inten[pedicle] = self.marrow * 0.95
        if ax <= self.sac_rx + 9.0:
            lamina = (
                (v > canal_back)
                & (v < canal_back + 7.0)
                & (np.abs(u - 0.35 * s.half_height) < s.half_height * 0.8)
            )
            inten[lamina] = self.marrow * 0.9
        if ax <= 3.5:
            spinous = (
                (v > canal_back + 5.0)
                & (v < canal_back + 38.0)
                & (np.abs(u - 0.5 * s.half_height) < s.half_height * 0.45)
            )
            inten[spinous] = self.marrow * 0.9

    def _foramina(self, x, y, z, inten, label) -> None:
        ax = abs(x)
        if not (self.sac_rx + 1.5 <= ax <= self.sac_rx + 9.0):
            return
        bodies = [s for s in self.segments if s.kind == "body"]
        for upper in bodies[:-1]:
            if upper.name.startswith("S"):
                break
            u, v = upper.local(y, z)
            front = upper.half_depth + 1.0
            # The foramen spans the lower half of the upper body and the disc below it.
            cu = upper.half_height * 0.55
            cv = front + 5.0
            a = upper.half_height * 0.6 + 3.0
            foramen = ((u - cu) / a) ** 2 + ((v - cv) / 4.8) ** 2 <= 1.0
            inten[foramen] = 0.8  # fat
            root = ((u - cu + a * 0.45) / 2.8) ** 2 + ((v - cv) / 2.5) ** 2 <= 1.0
            inten[foramen & root] = 0.25  # exiting nerve root
            label[foramen & (label == 0)] = FORAMEN
