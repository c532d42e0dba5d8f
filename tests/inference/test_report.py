import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_jax.data import io
from lumbar_jax.inference import levels, overlay, report
from lumbar_jax.labels import BODY, CANAL, CORD, DISC, FORAMEN
from tests.helpers import spines


def _label_image():
    labels = np.zeros((10, 40, 30), np.uint8)  # numpy (z, y, x)
    labels[2:5, 5:15, 5:10] = 1  # a body
    labels[6:9, 20:30, 5:12] = 1  # another body
    labels[2:8, 16:19, 6:11] = 2  # a disc
    labels[0, 0, 0] = 2  # a one-voxel crumb
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((0.7, 0.9, 4.0))
    image.SetOrigin((-12.0, 30.5, 7.0))
    rotation = sitk.VersorTransform((0.3, -0.2, 1.0), 0.4).GetMatrix()
    image.SetDirection(rotation)
    return image, labels


def test_report_agrees_with_the_label_map():
    image, labels = _label_image()
    out = report.structure_report(image)
    voxel_mm3 = 0.7 * 0.9 * 4.0
    body = out["vertebral_body"]
    assert body["voxels"] == int((labels == 1).sum())
    assert body["volume_mm3"] == pytest.approx(body["voxels"] * voxel_mm3, abs=0.1)
    # Centroid: mean voxel index through SimpleITK's own index-to-world transform.
    index_zyx = np.argwhere(labels == 1).mean(0)
    want = image.TransformContinuousIndexToPhysicalPoint(tuple(index_zyx[::-1].tolist()))
    np.testing.assert_allclose(body["centroid_world_mm"], want, atol=0.01)
    assert len(body["components"]) == 2
    # Components ordered superior (world z high) to inferior, volumes add up.
    zs = [c["centroid_world_mm"][2] for c in body["components"]]
    assert zs == sorted(zs, reverse=True)
    assert sum(c["volume_mm3"] for c in body["components"]) == pytest.approx(
        body["volume_mm3"], abs=0.2
    )
    lo, hi = (np.asarray(c) for c in body["bbox_world_mm"])
    assert np.all(lo <= want) and np.all(want <= hi)
    disc = out["intervertebral_disc"]
    assert len(disc["components"]) == 1 and disc["small_pieces"] == 1
    assert out["spinal_canal"]["voxels"] == 0 and out["spinal_canal"]["centroid_world_mm"] is None


def test_overlay_png(tmp_path):
    _, labels = _label_image()
    image = np.random.default_rng(0).random(labels.shape)
    path = tmp_path / "o.png"
    overlay.overlay_png(image, labels, (4.0, 0.9, 0.7), path, title="x")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".tmp-*"))


def test_report_components_carry_their_level_names_on_any_grid():
    spacing = (4.0, 1.0, 1.0)
    labels_dhw = spines.draw(spines.spine(), spacing)
    canonical = io.canonical_image(labels_dhw, spacing, (10.0, -20.0, 30.0))
    image = sitk.DICOMOrient(canonical, "LAS")  # stored in another voxel order
    out = report.structure_report(image)
    named = levels.name_levels(labels_dhw, spacing)
    report.add_levels(out, named, image)
    bodies = [c["level"] for c in out["vertebral_body"]["components"]]
    discs = [c["level"] for c in out["intervertebral_disc"]["components"]]
    assert bodies == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S2"]
    assert discs == ["T11/T12", "T12/L1", "L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]
    # A one-voxel bridge of body through L5/S1 joins L5 and S1 into one component of the
    # report; the naming splits them at the bridge, and the report says which two it holds.
    disc_rows = np.flatnonzero((labels_dhw[3] == DISC).any(axis=1))[-9:]  # L5/S1's rows
    labels_dhw[3, disc_rows, 15] = BODY
    image = sitk.DICOMOrient(io.canonical_image(labels_dhw, spacing), "LAS")
    out = report.structure_report(image)
    report.add_levels(out, levels.name_levels(labels_dhw, spacing), image)
    bodies = [c["level"] for c in out["vertebral_body"]["components"]]
    assert bodies == ["T11", "T12", "L1", "L2", "L3", "L4", "L5+S1", "S2"]


def test_overlay_slices_follow_the_anatomy_not_the_middle_of_the_volume(tmp_path):
    spacing = (4.0, 1.0, 1.0)
    labels = np.zeros((11, 60, 40), np.uint8)
    labels[2:5, 10:50, 20:30] = CANAL  # the canal around slice 3, not slice 11 // 2 = 5
    labels[3, 10:50, 23:27] = CORD
    labels[6, 20:30, 30:36] = FORAMEN  # left foramina 3 slices from the midline
    named = levels.name_levels(labels, spacing)
    panels = overlay.panel_slices(labels, spacing, named)
    assert panels == [("right para-sagittal", 0), ("mid-sagittal", 3), ("left para-sagittal", 6)]
    # Right of the midline there is no foramen: the slice about 13 mm away (3 slices), within
    # the volume; no slice twice, even with the canal at the edge.
    labels[:, :, :] = 0
    labels[0, 10:50, 20:30] = CANAL
    panels = overlay.panel_slices(labels, spacing)
    assert panels == [("right para-sagittal", None), ("mid-sagittal", 0), ("left para-sagittal", 3)]
    image = np.random.default_rng(0).random(labels.shape)
    overlay.overlay_png(image, labels, spacing, tmp_path / "o.png", levels=named)
    assert (tmp_path / "o.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overlay_writes_level_names_beside_the_structures(tmp_path, monkeypatch):
    spacing = (4.0, 1.0, 1.0)
    labels = spines.draw(spines.spine(), spacing)
    named = levels.name_levels(labels, spacing)
    written = []
    from matplotlib.axes import Axes

    original = Axes.text

    def text(self, x, y, s, *args, **kwargs):
        written.append((s, x, y))
        return original(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(Axes, "text", text)
    image = np.random.default_rng(0).random(labels.shape)
    overlay.overlay_png(image, labels, spacing, tmp_path / "o.png", levels=named)
    assert [s for s, _, _ in written] == [c.name for c in named.named()]
    # Each name at its structure's height, in front of it.
    for (_, x, y), comp in zip(written, named.named(), strict=True):
        assert abs(y - (comp.centroid_mm[1] + 0.5)) < 1.0
        assert x < comp.points_hw[:, 1].min()
