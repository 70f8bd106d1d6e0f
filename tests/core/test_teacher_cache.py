"""The teacher cache's fingerprint: a cache made by a teacher loaded or run otherwise is not reused."""

from __future__ import annotations

import pytest

from distill_gui.core import teacher_cache as tc

ROWS = [{"input_ids": [1, 5, 7, 9], "labels": [-100, -100, 7, 9]}, {"input_ids": [1, 4], "labels": [-100, 4]}]


@pytest.fixture()
def teacher_dir(tmp_path):
    folder = tmp_path / "teacher"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"weights")
    return str(folder)


def _print(teacher_dir, **loading):
    return tc.fingerprint(teacher_dir, ROWS, 8, 1.0, 300, **loading)


def test_the_digest_of_a_call_without_the_loading_keywords_is_unchanged(teacher_dir):
    assert _print(teacher_dir) == _print(teacher_dir, teacher_revision=None, teacher_quantization=None, autocast_dtype=None)


@pytest.mark.parametrize(
    "a, b",
    [
        (dict(teacher_quantization="none"), dict(teacher_quantization="4bit")),
        (dict(teacher_quantization="8bit"), dict(teacher_quantization="4bit")),
        (dict(teacher_dtype="torch.float32"), dict(teacher_dtype="torch.bfloat16")),
        (dict(teacher_revision="main"), dict(teacher_revision="v2")),
        (dict(teacher_gguf_file="q4.gguf"), dict(teacher_gguf_file="q8.gguf")),
        (dict(autocast_dtype="None"), dict(autocast_dtype="torch.bfloat16")),
        (dict(autocast_dtype="torch.float16"), dict(autocast_dtype="torch.bfloat16")),
        ({}, dict(teacher_quantization="4bit")),
    ],
)
def test_how_the_teacher_was_loaded_and_run_is_part_of_the_fingerprint(teacher_dir, a, b):
    assert _print(teacher_dir, **a) != _print(teacher_dir, **b)
    assert _print(teacher_dir, **a) == _print(teacher_dir, **a)


def test_a_cache_from_a_differently_loaded_teacher_is_refused_not_reused(teacher_dir, tmp_path):
    import torch

    made = tc.TeacherCache(ids=torch.zeros((3, 2), dtype=torch.int32), log_probs=torch.zeros((3, 3)),
                           offsets=torch.tensor([0, 2, 3]), top_k=2, temperature=1.0,
                           fingerprint=_print(teacher_dir, teacher_quantization="none", autocast_dtype="None"))
    path = made.save(tmp_path / "cache.safetensors")
    cache, reused = tc.load_or_build(path, made.fingerprint, lambda: pytest.fail("must not rebuild"))
    assert reused and cache.positions == 3
    with pytest.raises(tc.TeacherCacheError, match="quantization, dtype, revision or the run's precision"):
        tc.load_or_build(path, _print(teacher_dir, teacher_quantization="4bit", autocast_dtype="None"), lambda: made)


def test_caches_of_post_processed_heads_from_before_the_fix_are_not_reused(tmp_path):
    """A Gemma-2 / Granite / Cohere teacher's fingerprint differs from the one the old code wrote (whose
    cached log-probs lacked the soft cap or scale); a plain head's fingerprint is what it was."""
    import hashlib
    import json

    import numpy as np

    def old_fingerprint(path):  # the digest before the fix, written out
        digest = hashlib.sha256()
        digest.update(json.dumps({"teacher": tc._model_identity(path), "top_k": 8, "temperature": 1.0, "vocab": 300,
                                  "format": tc.FORMAT_VERSION}, sort_keys=True).encode())
        for row in ROWS:
            digest.update(np.asarray(row["input_ids"], dtype=np.int64).tobytes())
            digest.update(np.asarray(row["labels"], dtype=np.int64).tobytes())
            digest.update(b"|")
        return digest.hexdigest()

    for model_type, changed in [("gemma2", True), ("granite", True), ("cohere", True), ("llama", False), ("qwen2", False)]:
        folder = tmp_path / model_type
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
        assert (_print(str(folder)) != old_fingerprint(str(folder))) is changed, model_type
