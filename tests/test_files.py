"""Atomic writes: a reader sees the whole file or none."""

import pytest

from lumbar_jax import files


def test_write_text_replaces_the_whole_file(tmp_path):
    path = files.write_text(tmp_path / "a.json", "new")
    assert path.read_text() == "new"
    files.write_text(path, "newer")
    assert path.read_text() == "newer"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = files.write_text(tmp_path / "labels.nii.gz", "old")
    with pytest.raises(RuntimeError), files.atomic_path(path) as tmp:
        assert tmp.name.startswith(".tmp-") and tmp.name.endswith("-labels.nii.gz")
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]


def test_a_missing_folder_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        files.write_bytes(tmp_path / "nowhere" / "x.bin", b"x")


def test_written_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    path = files.write_text(tmp_path / "report.json", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
