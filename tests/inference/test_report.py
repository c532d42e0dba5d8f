import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_jax.inference import overlay, report


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
