"""The memory estimate: sane sizes, the right trends, and a readable summary."""

from __future__ import annotations

import pytest

from distill_gui.core.config import RunConfig, config_from_dict
from distill_gui.core.memory import (
    estimate_for_config,
    estimate_memory,
    format_bytes,
    system_memory_available,
)
from distill_gui.core.model_info import ModelInfo, describe_model
from distill_gui.core.models import ModelSource

GB = 1024**3


def llama_like(hidden: int, layers: int, intermediate: int, vocab: int, tied: bool) -> ModelInfo:
    """A ModelInfo for a Llama-shaped model (parameters counted the way the meta model counts them)."""
    heads = hidden // 64
    per_layer_linear = [(hidden, hidden)] * 4 + [(hidden, intermediate)] * 2 + [(intermediate, hidden)]
    linear_params = sum(i * o for i, o in per_layer_linear) * layers
    embeddings = vocab * hidden * (1 if tied else 2)
    num_params = linear_params + embeddings + (2 * layers + 1) * hidden
    return ModelInfo(
        source=ModelSource("folder", "/models/x"),
        architecture="LlamaForCausalLM",
        model_type="llama",
        num_params=num_params,
        vocab_size=vocab,
        tokenizer_vocab_size=vocab,
        hidden_size=hidden,
        num_layers=layers,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        tie_word_embeddings=tied,
        disk_dtype="bf16",
        disk_bytes=num_params * 2,
        num_linear_layers=7 * layers,
        linear_dims_total=sum(i + o for i, o in per_layer_linear) * layers,
    )


TEACHER = llama_like(hidden=2048, layers=16, intermediate=8192, vocab=128256, tied=True)  # ~1.2 B
STUDENT = llama_like(hidden=576, layers=30, intermediate=1536, vocab=128256, tied=True)  # ~0.2 B


def estimate(**overrides):
    kwargs = dict(method_kind="kd", batch_size=4, seq_len=512, chunk_size=512, teacher_dtype_bytes=2,
                  student_dtype_bytes=2, device_total_bytes=24 * GB)
    kwargs.update(overrides)
    return estimate_memory(TEACHER, STUDENT, **kwargs)


def test_parts_are_sane():
    est = estimate()
    assert 1.0e9 < TEACHER.num_params < 1.5e9
    assert est.teacher_weights == TEACHER.num_params * 2
    assert est.student_weights == STUDENT.num_params * 2
    assert est.gradients == STUDENT.num_params * 2
    assert est.optimizer == STUDENT.num_params * 8
    assert est.trainable_params == STUDENT.num_params
    assert est.activations > 0 and est.logits > 0
    assert est.total == sum(size for _, size in est.parts())
    assert 3 * GB < est.total < 20 * GB


def test_monotonic_in_batch_size_and_length():
    totals = [estimate(batch_size=b).total for b in (1, 2, 4, 8, 16)]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)
    assert estimate(seq_len=2048).activations > estimate(seq_len=512).activations


def test_lora_shrinks_gradients_and_optimizer():
    full = estimate()
    lora = estimate(lora_enabled=True, lora_r=16)
    assert lora.trainable_params == 16 * STUDENT.linear_dims_total < STUDENT.num_params / 10
    assert lora.optimizer == lora.trainable_params * 8 < full.optimizer / 10
    assert lora.gradients < full.gradients / 10
    assert estimate(lora_enabled=True, lora_r=64).optimizer == 4 * lora.optimizer


def test_quantization_shrinks_weights():
    plain = estimate()
    eight = estimate(teacher_quantization="8bit")
    four = estimate(teacher_quantization="4bit")
    assert four.teacher_weights < eight.teacher_weights < plain.teacher_weights
    qlora = estimate(student_quantization="4bit", lora_enabled=True)
    assert qlora.student_weights < plain.student_weights


def test_sft_needs_no_teacher_and_full_logits():
    sft = estimate(method_kind="sft")
    assert sft.teacher_weights == 0
    assert sft.logits == 4 * 512 * STUDENT.vocab_size * 4 * 3  # fp32 logits, log-softmax and gradient
    assert "Teacher" not in sft.summary() and all("Teacher" not in line for line in sft.lines())
    assert estimate_memory(None, STUDENT, method_kind="sft", device_total_bytes=GB).teacher_weights == 0


def test_chunking_bounds_kd_logits():
    small = estimate(chunk_size=128)
    large = estimate(chunk_size=2048)
    assert small.logits < large.logits
    assert estimate(chunk_size=10**6).logits == estimate(chunk_size=4 * 512).logits


def test_gradient_checkpointing_saves_activations():
    assert estimate(gradient_checkpointing=True).activations < estimate().activations / 4


def test_fits_flag_and_text():
    est = estimate()
    assert est.fits
    assert est.summary().startswith("Teacher weights ")
    assert est.summary().endswith(f"of {format_bytes(24 * GB)} available — fits")
    too_small = estimate(device_total_bytes=est.total)  # no room for the 10 % margin
    assert not too_small.fits and too_small.summary().endswith("does not fit")
    lines = est.lines()
    assert lines[0].startswith("Teacher weights") and lines[-1].startswith("Total")
    assert len(lines) == 7


def test_available_memory_from_the_machine():
    assert system_memory_available() > 0
    est = estimate_memory(TEACHER, STUDENT, device="cpu")
    assert est.available > 0 and "system RAM" in est.available_label


def test_format_bytes():
    assert [format_bytes(n) for n in (950, 14 * 1024**2, int(22.1 * GB), 300 * GB)] == ["950 B", "14.0 MB", "22.1 GB", "300 GB"]


def test_estimate_for_config(tiny_pair):
    teacher, student = tiny_pair
    config: RunConfig = config_from_dict({
        "teacher": {"path": str(teacher), "device": "cpu"},
        "student": {"path": str(student), "device": "cpu", "lora": {"enabled": True, "r": 4}},
        "training": {"batch_size": 2, "precision": "fp32"},
        "data": {"max_length": 64},
        "method": {"chunk_size": 32},
    })
    t_info = describe_model(config.teacher, "teacher")
    s_info = describe_model(config.student, "student")
    est = estimate_for_config(config, t_info, s_info, device_total_bytes=GB)
    assert est.teacher_weights == t_info.num_params * 4  # auto on CPU is fp32
    # A run computing in bf16 on a CPU loads the frozen teacher in bf16: half its weights' bytes.
    config.training.precision = "bf16"
    assert estimate_for_config(config, t_info, s_info, device_total_bytes=GB).teacher_weights == t_info.num_params * 2
    config.teacher.dtype = "fp32"
    assert estimate_for_config(config, t_info, s_info, device_total_bytes=GB).teacher_weights == t_info.num_params * 4
    config.teacher.dtype, config.training.precision = "auto", "fp32"
    assert est.trainable_params == s_info.lora_params(4)
    assert est.fits and est.total < 50 * 1024**2
    bigger = config_from_dict({**{"teacher": {"path": str(teacher), "device": "cpu"}},
                               "student": {"path": str(student), "device": "cpu"}, "training": {"batch_size": 8}})
    assert estimate_for_config(bigger, t_info, s_info, device_total_bytes=GB).total > est.total


@pytest.mark.parametrize("kind", ["kd", "sft"])
def test_tiny_estimates_are_positive(tiny_pair, kind):
    info = describe_model(config_from_dict({"student": {"path": str(tiny_pair[1])}}).student, "student")
    est = estimate_memory(info, info, method_kind=kind, batch_size=1, seq_len=8, chunk_size=8, device_total_bytes=GB)
    assert all(size >= 0 for _, size in est.parts()) and est.total > 0


def test_kd_never_counts_full_logits_and_a_cached_teacher_is_freed():
    live = estimate(batch_size=8, seq_len=2048)
    # The chunked path builds [chunk, vocab] blocks only: the logits do not grow with batch x length.
    assert live.logits == estimate(batch_size=1, seq_len=512).logits
    cached = estimate(batch_size=8, seq_len=2048, cache_teacher=True)
    assert cached.teacher_freed and cached.total < live.total
    assert cached.training_peak == cached.total - 0 or cached.total == cached.teacher_weights + cached.student_weights + cached.teacher_pass
    assert any(line.startswith("Teacher weights (freed)") for line in cached.lines())
