"""The anatomy of a synthetic lumbar spine, drawn on sagittal planes in patient millimetres.

Vertebral bodies T10..S3 along a lordotic curve, discs with a bright nucleus and dark
endplates, the dural sac with bright CSF down to S2, the cord ending in the conus near L1 with
cauda equina roots below, foramina on para-sagittal slices between the pedicles, posterior
elements, muscle, fat, skin and vessels. Some cases carry pathology, drawn from the case's seed:
degenerated discs (dark nucleus, lower height), diffuse posterior bulges, focal herniations
into the canal (labelled disc, displacing the dural sac) and Schmorl nodes (disc material
intruding through an endplate into the vertebral body, also labelled disc). ``render.py`` turns
planes into an acquired series.
"""

from __future__ import annotations

import math

import numpy as np

from lumbar_jax.data.phantom import pathology
from lumbar_jax.data.phantom.plane import Plane
from lumbar_jax.data.phantom.spine import Segment, build_spine, extend, superellipsoid, wedge
from lumbar_jax.data.phantom.tissues import ID as T
from lumbar_jax.labels import BODY, CANAL, CORD, DISC, FORAMEN


class Phantom:
    """One synthetic patient; ``render`` draws it on a canonical grid."""

    def __init__(self, rng: np.random.Generator, fov_mm: float):
        self.rng = rng
        self.fov = fov_mm
        # Where the spine sits in the field of view varies as on real series: the middle of
        # L3 anywhere from 40 % to 62 % down, the column 35-60 % back from the front edge.
        self.z_body = rng.uniform(0.35, 0.6) * fov_mm
        self.segments = build_spine(rng, 0.0, self.z_body)
        shift = rng.uniform(0.40, 0.62) * fov_mm - next(
            s.cy for s in self.segments if s.name == "L3"
        )
        for segment in self.segments:
            segment.cy += shift
        self.sac_rx = rng.uniform(7.0, 9.5)
        self.sac_rz = rng.uniform(5.5, 7.5)
        self.cord_rx, self.cord_rz = rng.uniform(4.0, 5.0), rng.uniform(3.0, 3.8)
        # The body's depth in mm, not in fields of view: a large field shows air around it.
        self.back_skin = self.z_body + rng.uniform(70.0, 140.0)
        self.fat = rng.uniform(10.0, 30.0)
        bodies = [s for s in self.segments if s.kind == "body"]
        self.bodies = {s.name: s for s in bodies}
        l1 = self.bodies["L1"]
        self.conus_y = l1.cy + rng.uniform(-0.5, 1.0) * l1.half_height
        s2 = self.bodies["S2"]
        self.sac_end_y = s2.cy + rng.uniform(-0.5, 0.3) * s2.half_height
        self.marrow = rng.uniform(0.38, 0.52)
        discs = [s for s in self.segments if s.kind == "disc"]
        self.degenerate = {s.name for s in discs if s.degenerate}
        # Diffuse bulge: the whole posterior disc margin pushed back by up to 4 mm.
        self.bulge = {s.name: rng.uniform(0, 4.0) if rng.random() < 0.3 else 0.0 for s in discs}
        # Focal herniations are commonest at L4/L5 and L5/S1.
        self.herniations = [
            pathology.draw_herniation(rng, s)
            for s in discs
            if rng.random() < (0.15 if s.name in ("L4/L5", "L5/S1") else 0.03)
        ]
        # Schmorl nodes, through the disc's upper (-1) or lower (+1) endplate.
        self.schmorl_nodes = [
            pathology.draw_schmorl(rng, s, side)
            for s in discs
            for side in (-1, 1)
            if rng.random() < 0.025
        ]
        self.root_offsets = rng.uniform(-1.0, 1.0, size=(8, 2))
        self._centrelines(bodies)
        # The back follows the lordosis in part; its mean distance is back_skin.
        self.back_follow = rng.uniform(0.4, 0.8)
        self.sac_z_mean = float(self.sac_z.mean())
        # Anterior abdominal wall (often outside the field of view) and its fat.
        self.front_skin = self.z_body - rng.uniform(90.0, 240.0)
        self.front_fat = rng.uniform(8.0, 30.0)
        # Bowel loops in mesenteric fat: a smooth random field, continuous across slices.
        k = 8
        directions = rng.standard_normal((k, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        self.bowel_k = directions * (2 * math.pi / rng.uniform(25.0, 70.0, (k, 1)))
        self.bowel_phase = rng.uniform(0, 2 * math.pi, k)
        # Posterior elements differ from vertebra to vertebra: spinous process length (mm),
        # its droop (mm down per mm back), its half width, the lamina's thickness.
        self.posterior = {
            s.name: (
                rng.uniform(22.0, 40.0),
                rng.uniform(0.0, 0.45),
                rng.uniform(2.5, 4.5),
                rng.uniform(5.0, 9.0),
            )
            for s in bodies
        }

    def _centrelines(self, bodies: list[Segment]) -> None:
        """The dural sac's centreline and the column's anterior surface, in the plane."""
        # Sac centreline: behind each segment's posterior wall, along its normal.
        pts = []
        for s in self.segments:
            off = s.half_depth + 2.0 + self.sac_rz
            pts.append((s.cy - off * math.sin(s.theta), s.cz + off * math.cos(s.theta)))
        pts.sort()
        self.sac_y = np.array([p[0] for p in pts])
        self.sac_z = np.array([p[1] for p in pts])
        # Anterior surface of the column, which the great vessels and the bowel lie against.
        front = sorted(
            (s.cy + s.half_depth * math.sin(s.theta), s.cz - s.half_depth * math.cos(s.theta))
            for s in bodies
        )
        # Extended along the end segments' slopes, so the line does not turn vertical where
        # the spine leaves the field of view.
        front = [
            extend(front[1], front[0], 200.0),
            *front,
            extend(front[-2], front[-1], 200.0),
        ]
        self.front_y = np.array([p[0] for p in front])
        self.front_z = np.array([p[1] for p in front])

    def sac_center_z(self, y: np.ndarray) -> np.ndarray:
        return np.interp(y, self.sac_y, self.sac_z)

    def bowel_field(self, x: float, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """A smooth random field of unit variance (a sum of plane waves) over the body."""
        k, phase = self.bowel_k, self.bowel_phase
        total = np.zeros(y.shape, np.float32)
        for i in range(len(phase)):
            total += np.cos(k[i, 0] * x + k[i, 1] * y + k[i, 2] * z + phase[i])
        return total * np.float32(math.sqrt(2.0 / len(phase)))

    def plane(self, x: float, y: np.ndarray, z: np.ndarray) -> Plane:
        """T2 intensity, label and tissue on the sagittal plane at left-right position ``x``.

        Drawn back to front: what comes later covers what came before.
        """
        plane = Plane.of_shape(y.shape)
        self._surroundings(plane, x, y, z)
        sac_z = self.sac_center_z(y)
        # Canal with epidural fat, wider than the sac.
        canal = (
            (x / (self.sac_rx + 2.5)) ** 2 + ((z - sac_z - 1.5) / (self.sac_rz + 3.0)) ** 2
        ) <= 1
        plane.paint(canal & (y < self.sac_end_y + 25), 0.72, T["epidural_fat"])
        for s in self.segments:
            if s.kind == "body":
                u, v = s.local(y, z)
                self._posterior_elements(plane, x, s, u, v)
        rng_tex = np.random.default_rng(int(abs(x) * 1000) + 7)
        for s in self.segments:
            u, v = s.local(y, z)
            if s.kind == "body":
                self._body(plane, x, s, u, v, rng_tex)
            else:
                self._disc(plane, x, s, u, v)
        self._foramina(plane, x, y, z)
        self._sac_and_cord(plane, x, y, z, sac_z)
        discs = {s.name: s for s in self.segments if s.kind == "disc"}
        pathology.paint(plane, x, y, z, discs, self.bulge, self.schmorl_nodes, self.herniations)
        return plane

    def _surroundings(self, plane: Plane, x: float, y: np.ndarray, z: np.ndarray) -> None:
        """Muscle, abdomen, abdominal wall, back, great vessels: all that is no structure."""
        front = np.interp(y, self.front_y, self.front_z)
        # Abdomen and pelvis ahead of the column: bowel (intermediate, some fluid-bright
        # loops) in bright fat; then the abdominal wall's muscle, fat, skin and air.
        abdomen = z < front - 8.0
        field = self.bowel_field(x, y, z)
        fat = 1.0 / (1.0 + np.exp(-3.0 * (field - 0.4)))  # soft edges between fat and bowel
        bowel = np.where(field > 0.4, T["mesenteric_fat"], T["abdominal_viscera"])
        fluid = field < -1.5
        plane.paint(abdomen, (0.34 + 0.36 * fat), bowel)
        plane.paint(abdomen & fluid, 0.8, T["fluid_bowel_bladder"])
        # Paraspinal and other muscle: faint fatty streaks, not a flat grey.
        streaks = self.bowel_field(x + 97.0, 0.5 * y, 2.0 * z)
        fatty = np.where(streaks > 1.3, T["intermuscular_fat"], T["muscle"])
        plane.paint(~abdomen, 0.26 + 0.03 * streaks, fatty)
        wall = self.front_skin
        plane.paint(z < wall + self.front_fat + 10.0, 0.25, T["muscle"])
        plane.paint(z < wall + self.front_fat, 0.78, T["subcutaneous_fat"])
        plane.paint(np.abs(z - wall) < 1.2, 0.35, T["skin"])
        plane.paint(z < wall - 1.2, 0.0, T["air"])
        # Back: subcutaneous fat, skin, air beyond; its surface follows the lordosis in part.
        back = self.back_skin + self.back_follow * (self.sac_center_z(y) - self.sac_z_mean)
        plane.paint(z > back - self.fat, 0.78, T["subcutaneous_fat"])
        plane.paint(np.abs(z - back) < 1.2, 0.35, T["skin"])
        plane.paint(z > back + 1.2, 0.0, T["air"])
        # Great vessels against the front of the column: dark flow voids, down to the
        # bifurcation near L4.
        for vx, vr in ((-12.0, 9.0), (14.0, 10.0)):
            if abs(x - vx) < vr:
                r = math.sqrt(vr**2 - (x - vx) ** 2)
                zc = front - vr - 3.0
                vessel = (np.abs(z - zc) < r) & (y < self.bodies["L4"].cy)
                plane.paint(vessel, 0.05, T["vessel_flow_void"])

    def _body(self, plane: Plane, x: float, s: Segment, u, v, rng_tex) -> None:
        """A vertebral body: marrow with a faint texture in a dark cortex and endplates."""
        inside = superellipsoid(u, v, x, s.half_height, s.half_depth, s.half_width)
        bone = self.marrow * (1.0 + 0.06 * rng_tex.standard_normal(u.shape))
        plane.paint(inside, bone, T["body_marrow"], BODY)
        cortex = inside & ~superellipsoid(
            u, v, x, s.half_height - 1.2, s.half_depth - 1.2, s.half_width - 1.2
        )
        plane.paint(cortex, 0.08, T["body_cortex_endplate"])

    def _disc(self, plane: Plane, x: float, s: Segment, u, v) -> None:
        """A disc: outer annulus, a transition zone, the nucleus (dark when degenerated)."""
        taper = wedge(s, v)
        bulge = self.bulge[s.name]
        inside = superellipsoid(
            u / taper, v - bulge * 0.5, x, s.half_height, s.half_depth + bulge * 0.5, s.half_width
        )
        plane.paint(inside, 0.3, T["outer_annulus"], DISC)
        # The nucleus grades into the annulus through a transition zone (inner annulus).
        nucleus = T["degenerate_nucleus"] if s.degenerate else T["nucleus"]
        inner = T["outer_annulus"] if s.degenerate else T["inner_annulus"]
        for grow, bright, tissue in ((1.18, 0.55, inner), (1.0, 0.85, nucleus)):
            zone = inside & superellipsoid(
                u / taper,
                v + 2.0,
                x,
                s.half_height * min(0.8 * grow, 0.95),
                s.half_depth * 0.72 * grow,
                s.half_width * 0.72 * grow,
                3.0,
            )
            plane.paint(zone, 0.3 + (0.05 if s.degenerate else 1.0) * (bright - 0.3), tissue)

    def _sac_and_cord(self, plane: Plane, x: float, y, z, sac_z) -> None:
        """The dural sac (CSF) down to S2; the cord to the conus, cauda equina roots below."""
        taper = np.clip((self.sac_end_y - y) / 15.0, 0.0, 1.0) ** 0.5
        rx, rz = self.sac_rx * taper + 1e-3, self.sac_rz * taper + 1e-3
        sac = ((x / rx) ** 2 + ((z - sac_z) / rz) ** 2 <= 1) & (y < self.sac_end_y)
        plane.paint(sac, 0.97, T["csf"], CANAL)
        cone = np.clip((self.conus_y - y) / 18.0, 0.0, 1.0) ** 0.6
        crx, crz = self.cord_rx * cone + 1e-3, self.cord_rz * cone + 1e-3
        cord = ((x / crx) ** 2 + ((z - sac_z + 0.8) / crz) ** 2 <= 1) & (y < self.conus_y)
        plane.paint(cord, 0.22, T["cord"], CORD)
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
        plane.paint(roots & ~cord, 0.22, T["cauda_equina"], CORD)

    def _posterior_elements(self, plane: Plane, x: float, s: Segment, u_body, v) -> None:
        """Pedicles, laminae and spinous processes: marrow inside a dark cortical shell."""
        front = s.half_depth + 1.5
        canal_back = front + 2 * self.sac_rz + 5.0
        ax = abs(x)
        cortex = 1.2

        def bone(u_lo, u_hi, v_lo, v_hi, x_lo, x_hi, droop=0.0):
            # Within ``cortex`` of the element's left-right edges the plane cuts only cortex.
            if not x_lo <= ax <= x_hi:
                return
            # A drooping element: its upper and lower edges go down as it goes back.
            u = u_body - droop * np.maximum(v - v_lo, 0.0)
            outer = (u > u_lo) & (u < u_hi) & (v > v_lo) & (v < v_hi)
            plane.paint(outer, 0.1, T["posterior_cortex"])
            if min(ax - x_lo, x_hi - ax) > cortex or x_lo == 0.0:
                inner = (
                    (u > u_lo + cortex)
                    & (u < u_hi - cortex)
                    & (v > v_lo + cortex)
                    & (v < v_hi - cortex)
                )
                plane.paint(inner, self.marrow * 0.7, T["posterior_marrow"])

        h = s.half_height
        spinous, droop, spinous_x, lamina = self.posterior[s.name]
        # Pedicle: the upper part of the vertebra, bridging body and lamina.
        bone(-h, 0.15 * h, front - 3, canal_back + 4, self.sac_rx + 1.5, self.sac_rx + 9.0)
        bone(-0.45 * h, 1.15 * h, canal_back, canal_back + lamina, 0.0, self.sac_rx + 9.0)
        bone(
            0.05 * h,
            0.95 * h,
            canal_back + 5.0,
            canal_back + 5.0 + spinous,
            0.0,
            spinous_x,
            droop,
        )  # the spinous process

    def _foramina(self, plane: Plane, x: float, y, z) -> None:
        """Foramina between the pedicles: fat around an exiting root, off the midline."""
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
            # Only where no structure is drawn yet: the foramen is the space between them.
            free = foramen & (plane.label == 0)
            plane.paint(free, 0.8, T["foraminal_fat"], FORAMEN)
            root = ((u - cu + a * 0.45) / 2.8) ** 2 + ((v - cv) / 2.5) ** 2 <= 1.0
            plane.paint(free & root, 0.25, T["foraminal_root"])  # the exiting nerve root
