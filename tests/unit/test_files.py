"""Atomic writes: the target holds the old content or the new, never a part; staging names never collide."""

import pytest

from sas_lens.loading.files import atomic_file, atomic_folder, atomic_write_text


def test_an_interrupted_write_leaves_the_old_file_and_no_staging_copy(tmp_path):
    target = tmp_path / "units.json"
    atomic_write_text(target, "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as staging:
            staging.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["units.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_two_writers_of_one_target_stage_in_different_files(tmp_path):
    target = tmp_path / "v.safetensors"
    with atomic_file(target) as first, atomic_file(target) as second:
        assert first != second
        first.write_text("a")
        second.write_text("b")
    assert target.read_text() == "a"  # the outer block ends last: its content wins, whole


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "index"
    with atomic_folder(folder) as staging:
        (staging / "index.json").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_folder(folder) as staging:
            (staging / "index.json").write_text("2")
            raise RuntimeError("cut off")
    assert (folder / "index.json").read_text() == "1"
    with atomic_folder(folder) as staging:
        (staging / "other.json").write_text("3")
    assert sorted(p.name for p in folder.iterdir()) == ["other.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_a_vector_save_cut_off_leaves_no_file(tmp_path, monkeypatch):
    import safetensors.torch
    import torch

    from sas_lens.steering.vectors import DenseVector

    vec = DenseVector(torch.ones(4), {"name": "v", "hook_name": "blocks.1.hook_resid_post", "layer": 1})

    def cut_off(tensors, path, metadata=None):
        open(path, "wb").write(b"\x08\x00")  # what an interruption mid-write leaves
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", cut_off)
    with pytest.raises(KeyboardInterrupt):
        vec.save(tmp_path / "v.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_written_files_and_folders_get_the_permissions_plain_writes_would(tmp_path):
    import os

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert os.stat(tmp_path / "atomic.txt").st_mode & 0o777 == os.stat(plain).st_mode & 0o777
    (tmp_path / "plain_dir").mkdir()
    with atomic_folder(tmp_path / "atomic_dir"):
        pass
    assert os.stat(tmp_path / "atomic_dir").st_mode & 0o777 == os.stat(tmp_path / "plain_dir").st_mode & 0o777
