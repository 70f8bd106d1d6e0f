"""A GGUF teacher's memory note: the file's size, the de-quantized size transformers loads, the served path past the free memory."""

from __future__ import annotations

import dataclasses

from distill_gui.core.gguf_size import gguf_load_note, gguf_teacher_note
from distill_gui.core.memory import estimate_memory, format_bytes
from distill_gui.core.model_info import ModelInfo
from distill_gui.core.models import ModelSource

GB = 1024**3


def _info(hidden: int, layers: int, vocab: int) -> ModelInfo:
    params = layers * 12 * hidden * hidden + vocab * hidden
    return ModelInfo(
        ModelSource("folder", "/models/x"),
        "LlamaForCausalLM",
        "llama",
        params,
        vocab,
        vocab,
        hidden,
        layers,
        4 * hidden,
        hidden // 64,
        True,
        "bf16",
        params * 2,
        7 * layers,
        layers * 20 * hidden,
    )


TEACHER = _info(2048, 24, 128_000)  # ~1.5 B
STUDENT = _info(576, 30, 128_000)


def test_note_names_both_numbers_and_suggests_serving_past_the_free_memory():
    fits = gguf_load_note(4 * GB, 7_000_000_000, 4, 64 * GB, "fp32")
    assert "4.0 GB GGUF file" in fits or format_bytes(4 * GB) in fits
    assert format_bytes(28_000_000_000) in fits and "teacher.url" not in fits
    too_big = gguf_load_note(4 * GB, 7_000_000_000, 4, 16 * GB, "fp32")
    assert format_bytes(4 * GB) in too_big and format_bytes(28_000_000_000) in too_big and format_bytes(16 * GB) in too_big
    assert "teacher.url" in too_big and "llama.cpp" in too_big


def test_the_memory_estimate_carries_the_note_for_a_gguf_teacher(tmp_path):
    file = tmp_path / "teacher.Q4_K_M.gguf"
    file.write_bytes(b"\0" * 123_456)
    gguf_teacher = dataclasses.replace(TEACHER, source=ModelSource("gguf", str(tmp_path), gguf_file=file.name))
    est = estimate_memory(
        gguf_teacher,
        STUDENT,
        method_kind="kd",
        batch_size=1,
        seq_len=64,
        teacher_dtype_bytes=4,
        student_dtype_bytes=4,
        device_total_bytes=2 * GB,
    )
    assert format_bytes(123_456) in est.note and format_bytes(TEACHER.num_params * 4) in est.note
    assert "teacher.url" in est.note  # ~4.9 GB of fp32 weights past 2 GB
    assert est.lines()[-1] == est.note and est.note in est.summary()
    plain = estimate_memory(TEACHER, STUDENT, method_kind="kd", batch_size=1, seq_len=64, device_total_bytes=2 * GB)
    assert plain.note == "" and gguf_teacher_note(TEACHER.source, 1, 4, GB) == ""
