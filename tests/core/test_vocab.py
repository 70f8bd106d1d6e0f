"""Tokenizer compatibility verdicts: identical, padded, different."""

from __future__ import annotations

import pytest
import tiny_models

from distill_gui.core.vocab import IncompatibleTokenizers, check_compatibility, require_kd_compatible


@pytest.fixture(scope="module")
def other_tokenizer():
    """A tokenizer trained on the same text with a smaller vocabulary: ids disagree."""
    return tiny_models.build_tokenizer(vocab_size=280)


def test_identical(tiny_tokenizer):
    n = len(tiny_tokenizer)
    compat = check_compatibility(tiny_tokenizer, tiny_tokenizer, n, n)
    assert compat.verdict == "identical" and compat.kd_compatible
    assert compat.shared_vocab_size == n
    assert "identical" in compat.message and "KD can be used" in compat.message
    assert require_kd_compatible(compat) is compat


def test_identical_with_saved_copy(tiny_pair, tiny_tokenizer):
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tiny_pair[1])
    compat = check_compatibility(tiny_tokenizer, reloaded, len(tiny_tokenizer), len(reloaded))
    assert compat.verdict == "identical"


def test_padded_embeddings(tiny_tokenizer):
    n = len(tiny_tokenizer)
    compat = check_compatibility(tiny_tokenizer, tiny_tokenizer, n + 64, n)
    assert compat.verdict == "padded" and compat.kd_compatible
    assert compat.shared_vocab_size == n <= min(n + 64, n)
    assert f"{n + 64:,}" in compat.message and f"first {n:,} logits" in compat.message
    flipped = check_compatibility(tiny_tokenizer, tiny_tokenizer, n, n + 128)
    assert (flipped.verdict, flipped.shared_vocab_size) == ("padded", n)


def test_embeddings_smaller_than_tokenizer(tiny_tokenizer):
    n = len(tiny_tokenizer)
    compat = check_compatibility(tiny_tokenizer, tiny_tokenizer, n, n - 10)
    assert compat.verdict == "different" and compat.shared_vocab_size is None
    assert "student model has only" in compat.message


def test_different(tiny_tokenizer, other_tokenizer):
    compat = check_compatibility(tiny_tokenizer, other_tokenizer, len(tiny_tokenizer), len(other_tokenizer))
    assert compat.verdict == "different" and not compat.kd_compatible
    assert compat.shared_vocab_size is None
    assert compat.differing_tokens >= len(tiny_tokenizer) - len(other_tokenizer)
    assert 0 < len(compat.sample_differences) <= 5
    assert "cannot be used" in compat.message and "method.kind: sft" in compat.message
    with pytest.raises(IncompatibleTokenizers, match="method.kind: sft"):
        require_kd_compatible(compat)
    assert issubclass(IncompatibleTokenizers, ValueError)


def test_special_tokens_differ_only(tiny_pair):
    """Same vocabulary, another eos role (base vs instruct models): KD works; the message says so."""
    from transformers import AutoTokenizer

    teacher = AutoTokenizer.from_pretrained(tiny_pair[0])
    student = AutoTokenizer.from_pretrained(tiny_pair[1])
    student.eos_token = "<|assistant|>"
    n = len(teacher)
    compat = check_compatibility(teacher, student, n, n)
    assert compat.verdict == "identical"
    assert compat.special_token_differences == ("eos_token: '</s>' vs '<|assistant|>'",)
    assert "Special tokens are set differently" in compat.message
