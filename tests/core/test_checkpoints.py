"""Atomic checkpoints: only complete ones count, an interrupted write is never offered."""

from __future__ import annotations

import pytest

from distill_gui.core import checkpoints as ckpt


def _write(folder, name="model.safetensors", text="weights"):
    (folder / name).write_text(text)


def test_complete_checkpoint_is_listed(tmp_path):
    with ckpt.atomic_checkpoint(tmp_path / "step-000002") as staging:
        _write(staging)
    assert ckpt.is_complete(tmp_path / "step-000002")
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-000002"


def test_interrupted_write_leaves_nothing_loadable(tmp_path):
    with ckpt.atomic_checkpoint(tmp_path / "step-000002") as staging:
        _write(staging)
    with pytest.raises(RuntimeError):
        with ckpt.atomic_checkpoint(tmp_path / "step-000004") as staging:
            _write(staging)
            raise RuntimeError("disk full")
    assert not (tmp_path / "step-000004").exists()
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-000002"
    assert [p.name for p in tmp_path.iterdir()] == ["step-000002"]


def test_folders_without_marker_and_partials_are_ignored_and_swept(tmp_path):
    with ckpt.atomic_checkpoint(tmp_path / "step-000002") as staging:
        _write(staging)
    # What a SIGKILL in the middle of a write leaves behind:
    (tmp_path / ".partial-step-000004-1-2").mkdir()
    _write(tmp_path / ".partial-step-000004-1-2")
    (tmp_path / "step-000006").mkdir()  # copied by hand, no marker
    _write(tmp_path / "step-000006")
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "step-000002"
    ckpt.sweep_partials(tmp_path)
    assert not (tmp_path / ".partial-step-000004-1-2").exists()


def test_rewrite_replaces_only_after_completion(tmp_path):
    with ckpt.atomic_checkpoint(tmp_path / "final") as staging:
        _write(staging, text="old")
    with pytest.raises(KeyboardInterrupt):
        with ckpt.atomic_checkpoint(tmp_path / "final") as staging:
            _write(staging, text="new")
            raise KeyboardInterrupt
    assert (tmp_path / "final" / "model.safetensors").read_text() == "old"
    with ckpt.atomic_checkpoint(tmp_path / "final") as staging:
        _write(staging, text="new")
    assert (tmp_path / "final" / "model.safetensors").read_text() == "new"


def test_rotation_keeps_the_newest(tmp_path):
    for step in (1, 2, 3, 4):
        with ckpt.atomic_checkpoint(tmp_path / ckpt.step_dir_name(step)) as staging:
            _write(staging)
    removed = ckpt.rotate_checkpoints(tmp_path, keep=2)
    assert [p.name for p in removed] == ["step-000001", "step-000002"]
    assert [s for s, _ in ckpt.complete_step_checkpoints(tmp_path)] == [3, 4]
