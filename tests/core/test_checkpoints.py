"""Atomic checkpoints: only complete ones count, an interrupted write is never offered."""

from __future__ import annotations

from pathlib import Path

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


def _checkpoint(folder, step, files=None):
    with ckpt.atomic_checkpoint(folder / ckpt.step_dir_name(step), {"step": step}) as staging:
        for name, text in (files or {"model.safetensors": f"weights {step}", "scheduler.pt": "sched", "sub/rng.pth": "rng"}).items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text)
    return folder / ckpt.step_dir_name(step)


def test_marker_lists_every_file_and_an_intact_checkpoint_verifies(tmp_path):
    path = _checkpoint(tmp_path, 2)
    marker = ckpt.read_marker(path)
    assert sorted(marker["files"]) == ["model.safetensors", "scheduler.pt", "sub/rng.pth"]
    assert marker["step"] == 2 and marker["checksum"] == ckpt.HASH_NAME
    ckpt.verify(path)
    assert ckpt.damage(path) is None


def _flip_byte(path, offset=3):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("harm", "words"),
    [
        (lambda p: _flip_byte(p / "model.safetensors"), "model.safetensors has changed"),
        (lambda p: (p / "scheduler.pt").unlink(), "scheduler.pt is missing"),
        (lambda p: (p / "sub" / "rng.pth").write_text("r"), "sub/rng.pth has 1 bytes"),
        (lambda p: (p / ckpt.COMPLETE_MARKER).write_bytes(b"\x00\xff"), "marker is damaged"),
        (lambda p: (p / ckpt.COMPLETE_MARKER).write_text("[1]"), "marker is damaged"),
    ],
)
def test_damage_is_named_and_resume_falls_back_to_the_newest_intact(tmp_path, harm, words):
    _checkpoint(tmp_path, 2)
    newest = _checkpoint(tmp_path, 4)
    harm(newest)
    with pytest.raises(ckpt.CheckpointDamaged, match=words):
        ckpt.verify(newest)
    path, skipped = ckpt.latest_intact_checkpoint(tmp_path)
    assert path == tmp_path / "step-000002"
    assert len(skipped) == 1 and skipped[0].startswith("step-000004: ") and words in skipped[0]


def test_no_intact_checkpoint_says_why_for_each(tmp_path):
    for step in (2, 4):
        _flip_byte(_checkpoint(tmp_path, step) / "model.safetensors")
    path, skipped = ckpt.latest_intact_checkpoint(tmp_path)
    assert path is None and [s.split(":")[0] for s in skipped] == ["step-000004", "step-000002"]


def test_a_marker_from_before_checksums_still_counts(tmp_path):
    path = _checkpoint(tmp_path, 2)
    (path / ckpt.COMPLETE_MARKER).write_text('{"written_at": 1, "step": 2}')
    assert ckpt.damage(path) is None


def test_rotation_renames_aside_before_deleting(tmp_path, monkeypatch):
    for step in (1, 2, 3):
        _checkpoint(tmp_path, step)
    # A kill inside the delete: the folder is already out of the step-N names, so nothing half-deleted is offered.
    monkeypatch.setattr(ckpt.shutil, "rmtree", lambda path, ignore_errors=False: (Path(path) / "model.safetensors").unlink())
    ckpt.rotate_checkpoints(tmp_path, keep=1)
    assert [s for s, _ in ckpt.complete_step_checkpoints(tmp_path)] == [3]
    leftovers = sorted(p.name.split("-")[0] for p in tmp_path.iterdir() if p.name.startswith("."))
    assert leftovers == [".removed", ".removed"]
    monkeypatch.undo()
    ckpt.sweep_partials(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["step-000003"]


def test_a_kill_between_moving_the_old_aside_and_renaming_the_new_keeps_a_checkpoint(tmp_path):
    old = _checkpoint(tmp_path, 0, {"model.safetensors": "old"})
    final = tmp_path / "final"
    old.rename(final)
    staging = ckpt.staging_dir(final)
    staging.mkdir()
    (staging / "model.safetensors").write_text("new")
    # commit() up to the point where the old folder is aside and the new one not yet renamed:
    real_rename = Path.rename
    calls = []

    def rename_then_die(self, target):
        calls.append(self)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands for SIGKILL at this instant
        return real_rename(self, target)

    import unittest.mock

    with unittest.mock.patch.object(Path, "rename", rename_then_die), pytest.raises(KeyboardInterrupt):
        ckpt.commit(staging, final)
    assert not final.exists()
    ckpt.sweep_partials(tmp_path)
    assert (final / "model.safetensors").read_text() == "new" and ckpt.damage(final) is None
    assert [p.name for p in tmp_path.iterdir()] == ["final"]
