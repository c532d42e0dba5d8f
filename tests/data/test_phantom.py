import json

import numpy as np
import PIL.Image
import pytest
from scipy import ndimage

from lumbar_jax.data import datasets, io, prepared, splits
from lumbar_jax.data.phantom import anatomy, pathology, preview, render, tissues
from lumbar_jax.data.phantom import dataset as phantom_dataset
from lumbar_jax.labels import BODY, CANAL, CORD, DISC, FORAMEN, LABEL_NAMES
from tests.helpers.commands import run_command


def test_render_is_deterministic_and_has_every_structure():
    case = render.render_case(3, matrix=128)
    image, label, acq = case.image_dhw, case.label_dhw, case.acquisition
    again = render.render_case(3, matrix=128)
    again, label_again = again.image_dhw, again.label_dhw
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(label, label_again)
    assert image.shape == label.shape == (acq.num_slices, 128, 128)
    assert 12 <= acq.num_slices <= 20
    assert 3.5 <= acq.slice_thickness <= 5.0
    assert acq.slice_thickness < acq.slice_spacing <= 5.5  # slices have gaps
    counts = np.bincount(label.ravel(), minlength=6)
    assert (counts[1:] > 0).all(), counts
    # T2 contrast on the mid-sagittal slice: bright CSF around a dark cord, discs with a
    # nucleus brighter than any part of the vertebral bodies.
    mid = acq.num_slices // 2
    pick = [image[mid][label[mid] == k] for k in range(6)]
    assert np.median(pick[CANAL]) > 2 * np.median(pick[CORD])
    assert np.median(pick[CANAL]) > np.median(pick[BODY])
    assert np.percentile(pick[DISC], 90) > np.percentile(pick[BODY], 90)
    # Foramina only off the midline.
    assert (label[mid] == FORAMEN).sum() == 0
    assert (label[mid - 1 : mid + 2] == CANAL).sum() > 0
    assert not np.array_equal(image, render.render_case(4, matrix=128).image_dhw)


def test_write_dataset_layout(tmp_path):
    root = phantom_dataset.write_dataset(tmp_path / "ds", num_cases=3, seed=1, matrix=48)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["labels"] == {name: i for i, name in enumerate(LABEL_NAMES)}
    assert sorted(i for ids in meta["split"].values() for i in ids) == [
        "phantom_000",
        "phantom_001",
        "phantom_002",
    ]
    ds = datasets.load_nnunet_raw(root)
    assert len(ds.cases) == 3
    case = ds.cases["phantom_001"]
    image = io.read_canonical(case.image_path)
    label = io.read_canonical(case.label_path)
    assert image.array_dhw.shape == label.array_dhw.shape
    assert image.array_dhw.shape[1:] == (48, 48)
    # The generator's direction cosines are tilted, not the identity.
    assert not np.allclose(np.reshape(image.reference.GetDirection(), (3, 3)), np.eye(3))
    seeds = np.random.SeedSequence(1).generate_state(3)
    expected = render.render_case(int(seeds[1]), 48).image_dhw
    np.testing.assert_array_equal(image.array_dhw, expected)
    assert not list(tmp_path.glob(".tmp-*"))


def test_split_proportions():
    split = splits.split_case_ids([f"c{i}" for i in range(80)], seed=0)
    assert [len(split[k]) for k in ("train", "validation", "test")] == [57, 12, 11]


def _pathology_free(seed: int, fov: float = 300.0) -> anatomy.Phantom:
    p = anatomy.Phantom(np.random.default_rng(seed), fov)
    p.herniations, p.schmorl_nodes = [], []
    return p


def test_pathology_is_seeded_and_occasional():
    cases = [anatomy.Phantom(np.random.default_rng(seed), 300.0) for seed in range(60)]
    again = anatomy.Phantom(np.random.default_rng(7), 300.0)
    assert again.herniations == cases[7].herniations
    assert again.schmorl_nodes == cases[7].schmorl_nodes
    assert again.degenerate == cases[7].degenerate
    for kind in ("herniations", "schmorl_nodes", "degenerate"):
        with_it = sum(bool(getattr(p, kind)) for p in cases)
        assert 3 <= with_it <= 57, (kind, with_it)


def test_herniation_is_disc_and_displaces_the_sac():
    healthy = _pathology_free(5)
    sick = _pathology_free(5)
    disc = next(s for s in sick.segments if s.name == "L4/L5")
    sick.herniations = [pathology.Herniation("L4/L5", 0.0, 0.0, 6.0, disc.half_height + 2, 5.0)]
    coords = np.arange(0.0, 300.0, 0.5)
    y, z = np.meshgrid(coords, coords, indexing="ij")
    h, s = healthy.plane(0.0, y, z), sick.plane(0.0, y, z)
    inten_h, label_h, inten_s, label_s = h.inten, h.label, s.inten, s.label
    changed = label_h != label_s
    assert changed.sum() > 50
    assert (label_s[changed] == DISC).all()  # herniated material is labelled disc
    assert not (label_h[changed] == BODY).any()  # and never replaces bone
    assert ((label_h == CANAL) & changed).sum() > 20  # it pushes into the sac
    # Behind the disc, darker than the CSF it replaces.
    _, v = disc.local(y, z)
    assert (v[changed] > disc.half_depth - 2.5).all()
    assert np.median(inten_s[changed]) < 0.6 < np.median(inten_h[label_h == CANAL])


def test_schmorl_node_is_disc_inside_the_body():
    healthy = _pathology_free(5)
    sick = _pathology_free(5)
    sick.schmorl_nodes = [pathology.SchmorlNode("L2/L3", -1, 0.0, 0.0, 5.0, 4.0)]
    coords = np.arange(0.0, 300.0, 0.5)
    y, z = np.meshgrid(coords, coords, indexing="ij")
    label_h, label_s = healthy.plane(0.0, y, z).label, sick.plane(0.0, y, z).label
    changed = label_h != label_s
    assert changed.sum() > 20
    assert (label_h[changed] == BODY).all() and (label_s[changed] == DISC).all()
    # It is continuous with its disc: the node touches the disc's own voxels.
    disc = next(s for s in sick.segments if s.name == "L2/L3")
    u, v = disc.local(y, z)
    own_disc = (label_h == DISC) & (np.abs(u) < disc.half_height + 1) & (np.abs(v) < 25)
    assert (ndimage.binary_dilation(changed, iterations=2) & own_disc).any()
    # It goes up, into the body above.
    assert (u[changed] < 0).all()


def test_previews_are_written_in_physical_proportions(tmp_path):
    case = render.render_case(3, matrix=48)
    image, label = case.image_dhw, case.label_dhw
    slices = preview.preview_slices(label)
    mid_canal = (label[slices["mid"]] == CANAL).sum()
    assert mid_canal == max((label[d] == CANAL).sum() for d in range(len(label)))
    assert (label[slices["para"]] == FORAMEN).sum() > 0
    square = preview.write_previews(image, label, (4.0, 1.0, 1.0), tmp_path / "a", "c")
    assert [p.name for p in square] == ["c_mid.png", "c_para.png"]
    for path in square:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Rows twice as tall in mm: the picture is taller, not stretched to square pixels.
    tall = preview.write_previews(image, label, (4.0, 2.0, 1.0), tmp_path / "b", "c")
    size = [PIL.Image.open(p).size for p in (square[0], tall[0])]
    assert size[0][0] == size[1][0] and size[1][1] > 1.5 * size[0][1]


@pytest.mark.slow
def test_preview_command_without_a_dataset(tmp_path):
    result = run_command("synth", f"--preview={tmp_path / 'p'}", "--cases=2", "--matrix=32")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "phantom_000_mid.png",
        "phantom_000_para.png",
        "phantom_001_mid.png",
        "phantom_001_para.png",
    ]
    assert not (tmp_path / "p" / "dataset.json").exists()


def test_tissue_maps_agree_with_the_labels_and_are_seeded():
    case = render.render_case(5, matrix=96)
    assert case.tissue_dhw.shape == case.label_dhw.shape
    # Every structure's voxels lie in tissues of that structure, and no other tissue does.
    np.testing.assert_array_equal(tissues.LABEL_OF_TISSUE[case.tissue_dhw], case.label_dhw)
    present = set(np.unique(case.tissue_dhw).tolist())
    assert len(present) >= 12  # the tissues that are no structure are drawn too
    for name in ("posterior_marrow", "epidural_fat", "foraminal_fat", "csf", "cord", "muscle"):
        assert tissues.ID[name] in present, name
    np.testing.assert_array_equal(render.render_case(5, matrix=96).tissue_dhw, case.tissue_dhw)


def test_dataset_writes_tissue_maps_read_with_their_case(tmp_path):
    root = phantom_dataset.write_dataset(tmp_path / "ds", num_cases=3, seed=1, matrix=48)
    ds = datasets.load_nnunet_raw(root)
    case = ds.cases["phantom_002"]
    assert case.tissue_path == root / "tissuesTr" / "phantom_002.nii.gz"
    prepared_case = prepared.prepare_case(case, ds, with_tissue=True)
    np.testing.assert_array_equal(
        tissues.LABEL_OF_TISSUE[prepared_case.tissue_dhw], prepared_case.label_dhw
    )
