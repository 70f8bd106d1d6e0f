"""The teacher cache's fingerprint: a cache made by a teacher loaded or run otherwise is not reused."""

from __future__ import annotations

import math

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


# ---- The compact encoding (format 2) ------------------------------------------------------------------


def _top_k(positions=40, vocab=300, k=16, seed=0, scale=3.0):
    import torch

    from distill_gui.core.losses import teacher_top_k

    g = torch.Generator().manual_seed(seed)
    ids, log_probs = teacher_top_k(torch.randn(positions, vocab, generator=g) * scale, k)
    return ids.to(torch.int32), log_probs


def _cache(ids, log_probs, encoding, offsets=None):
    import torch

    offsets = torch.tensor([0, 10, 10, ids.shape[0]]) if offsets is None else offsets
    return tc.TeacherCache(ids, log_probs, offsets, ids.shape[1], 1.0, "f", encoding=encoding)


def _in_id_order(ids, log_probs):
    import torch

    order = ids.long().sort(1)
    return order.values, torch.cat([log_probs[:, :-1].gather(1, order.indices), log_probs[:, -1:]], 1)


@pytest.mark.parametrize("vocab", [300, 70_000])
def test_a_compact_cache_reads_back_what_it_holds_within_the_stated_tolerance(tmp_path, vocab):
    import torch

    from distill_gui.core import teacher_cache_encoding as enc

    ids, log_probs = _top_k(vocab=vocab, k=32)
    cache = _cache(ids, log_probs, "compact")
    want_ids, want_lp = _in_id_order(ids, log_probs)
    assert torch.equal(cache.ids.long(), want_ids)  # the same tokens, sorted by id
    torch.testing.assert_close(cache.log_probs[:, -1], log_probs[:, -1], rtol=0, atol=0)  # the tail exactly
    near = want_lp[:, :-1] > want_lp[:, :-1].amax(1, keepdim=True) - 4
    err = (cache.log_probs - want_lp).abs()
    assert 0 < err[:, :-1][near].max() <= enc.LOG_PROB_TOLERANCE  # quantized, within 1/32 nat near the top
    assert err.max() <= 0.3  # and within a quarter nat (the far grid) anywhere
    torch.testing.assert_close(cache.log_probs.logsumexp(1), torch.zeros(ids.shape[0]), rtol=0, atol=1e-5)

    path = cache.save(tmp_path / "compact.safetensors")
    loaded = tc.TeacherCache.load(path)
    assert loaded.encoding == "compact" and torch.equal(loaded.offsets, cache.offsets)
    assert torch.equal(loaded.ids, cache.ids) and torch.equal(loaded.log_probs, cache.log_probs)  # bit for bit
    for rows in ([2], [1], [2, 0]):
        got, want = loaded.for_rows(rows), cache.for_rows(rows)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    exact = _cache(ids, log_probs, "exact").save(tmp_path / "exact.safetensors")
    assert path.stat().st_size < exact.stat().st_size / 2.5
    # made again from the values it holds, a compact cache is unchanged
    again = _cache(loaded.ids, loaded.log_probs, "compact")
    assert torch.equal(again.ids, loaded.ids) and torch.equal(again.log_probs, loaded.log_probs)


def test_an_exact_cache_keeps_every_value(tmp_path):
    import torch

    ids, log_probs = _top_k()
    loaded = tc.TeacherCache.load(_cache(ids, log_probs, "exact").save(tmp_path / "c.safetensors"))
    assert loaded.encoding == "exact" and torch.equal(loaded.ids, ids) and torch.equal(loaded.log_probs, log_probs)


def test_the_builders_write_the_compact_encoding_by_default():
    import inspect

    assert tc.DEFAULT_ENCODING == "compact"
    for builder in (tc.build_teacher_cache, tc.build_teacher_cache_from_served):
        assert inspect.signature(builder).parameters["encoding"].default is None  # None: DEFAULT_ENCODING


def test_a_missing_token_of_a_served_teacher_stays_negligible():
    """The served path's -1e4 for a token the server did not name is kept as 59.5 nats under the top."""
    import torch

    ids = torch.tensor([[3, 9, 1]], dtype=torch.int32)
    log_probs = torch.tensor([[-0.1, -2.5, -1e4, math.log(1 - math.exp(-0.1) - math.exp(-2.5))]])
    cache = _cache(ids, log_probs, "compact", offsets=torch.tensor([0, 1]))
    assert cache.ids.tolist() == [[1, 3, 9]]
    missing, top = cache.log_probs[0, 0].item(), cache.log_probs[0, 1].item()
    assert top == pytest.approx(-0.1, abs=2e-3) and missing == pytest.approx(top - 59.5, abs=1e-3)


def test_an_old_or_damaged_cache_is_refused_never_misread(tmp_path):
    import torch
    from safetensors.torch import save_file

    ids, log_probs = _top_k()
    old = tmp_path / "v1.safetensors"
    save_file({"ids": ids, "log_probs": log_probs, "offsets": torch.tensor([0, 10, 10, 40])}, str(old),
              metadata={"format": "1", "fingerprint": "f", "top_k": "16", "temperature": "1.0"})
    with pytest.raises(tc.TeacherCacheError, match="format '1' .* expected 2; delete it to rebuild it"):
        tc.load_or_build(old, "f", lambda: pytest.fail("an old file is never overwritten"))

    cache = _cache(ids, log_probs, "compact")
    tensors, extra = cache._tensors()
    tensors["blocks"][5:40] = 7  # bytes changed inside the first row's block
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={"format": "2", "encoding": "compact", "fingerprint": "f", "top_k": "16",
                                           "temperature": "1.0", **extra})
    with pytest.raises(tc.TeacherCacheError, match="damaged teacher cache .* delete it to rebuild it"):
        tc.TeacherCache.load(bad)
    with pytest.raises(tc.TeacherCacheError, match="encoding 'zip'"):
        _cache(ids, log_probs, "zip")


def _build_slowly_in_a_child(path: str, log_file: str) -> None:
    import time

    import torch

    def build():
        with open(log_file, "a") as fh:
            fh.write("built\n")
        time.sleep(1.0)
        return tc.TeacherCache(ids=torch.zeros((3, 2), dtype=torch.int32), log_probs=torch.zeros((3, 3)),
                               offsets=torch.tensor([0, 2, 3]), top_k=2, temperature=1.0, fingerprint="shared")

    tc.load_or_build(path, "shared", build)


def test_runs_sharing_one_cache_file_build_it_once(tmp_path):
    """Two processes that want the same cache file (the demo's students side by side): one builds it, the
    other waits for it and reuses it instead of running the teacher again."""
    import multiprocessing

    path, log_file = tmp_path / "cache.safetensors", tmp_path / "builds.txt"
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_build_slowly_in_a_child, args=(str(path), str(log_file))) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    assert log_file.read_text().splitlines() == ["built"]
    assert tc.TeacherCache.load(path).fingerprint == "shared"


def test_a_large_compact_cache_stays_compressed_in_memory_and_decodes_only_the_rows_asked_for(tmp_path, monkeypatch):
    """Past the decoded-size limit a compact cache keeps its compressed blocks (about its file's size, a fraction of
    float32 ids and log-probs) and a batch decodes only its own rows; within it the cache is decoded once and batches
    read tensors. Both give what the whole cache decodes to."""
    import torch

    from distill_gui.core import teacher_cache_encoding as enc

    ids, log_probs = _top_k(positions=600, vocab=5000, k=64)
    offsets = torch.tensor([0, 100, 250, 250, 600])
    exact = _cache(ids, log_probs, "exact", offsets)
    path = _cache(ids, log_probs, "compact", offsets).save(tmp_path / "c.safetensors")
    large = tc.TeacherCache.load(path, decoded_limit=exact.memory_bytes - 1)
    small = tc.TeacherCache.load(path)
    assert exact.memory_bytes == large.decoded_bytes == 600 * (64 * 4 + 65 * 4)
    assert not large.decoded and large.memory_bytes <= path.stat().st_size < 0.3 * exact.memory_bytes
    assert small.decoded and small.memory_bytes > exact.memory_bytes  # the tensors, and the blocks for save()
    everything = (small.ids, small.log_probs)
    decoded = []
    real = enc.decode_block
    monkeypatch.setattr(enc, "decode_block", lambda block, n, k, id_dtype: decoded.append(n) or real(block, n, k, id_dtype))
    want = torch.cat([torch.arange(250, 600), torch.arange(0, 100)])
    for cache, blocks_read in ((large, [350, 100]), (small, [])):
        got_ids, got_lp = cache.for_rows([3, 0])
        assert decoded == blocks_read, "only the batch's rows are decoded (none from decoded tensors)"
        assert torch.equal(got_ids, everything[0][want]) and torch.equal(got_lp, everything[1][want])
        decoded.clear()
    built = _cache(ids, log_probs, "compact", offsets)  # made in this process: decoded the same way as loaded
    assert built.decoded and torch.equal(built.ids, small.ids) and torch.equal(built.log_probs, small.log_probs)


@pytest.mark.parametrize("decoded_limit", [None, 0], ids=["decoded", "kept-compressed"])
def test_a_compact_cache_with_a_damaged_block_is_refused_when_loaded(tmp_path, decoded_limit):
    import torch
    from safetensors.torch import load_file, save_file

    ids, log_probs = _top_k(positions=40, k=8)
    path = _cache(ids, log_probs, "compact").save(tmp_path / "c.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(path))
    blocks = tensors["blocks"].clone()
    start = int(tensors["block_offsets"][2])
    blocks[start + 2 : start + 12] = torch.arange(10, dtype=torch.uint8)  # the last row's block garbled
    save_file({**tensors, "blocks": blocks}, str(path), metadata=meta)
    with pytest.raises(tc.TeacherCacheError, match=r"a damaged teacher cache \(row 2"):
        tc.TeacherCache.load(path, decoded_limit=decoded_limit)
