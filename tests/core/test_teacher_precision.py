"""A frozen teacher of a bf16 run on a CPU is loaded in bf16 (autocast would cast its weights every step)."""

from __future__ import annotations

import pytest

from distill_gui.core.config import ModelConfig
from distill_gui.core.training.setup import frozen_teacher_dtype


def _teacher(**fields):
    return ModelConfig(path="teacher", device="cpu", **fields)


def test_a_bf16_run_on_a_cpu_loads_its_teacher_in_bf16():
    assert frozen_teacher_dtype(_teacher(), "bf16").dtype == "bf16"


@pytest.mark.parametrize(
    "fields, precision",
    [
        ({}, "fp32"),  # no autocast: the teacher computes in float32 as asked
        ({"dtype": "fp32"}, "bf16"),  # an explicit dtype is kept
        ({"quantization": "8bit"}, "bf16"),  # a quantized teacher is loaded as configured
    ],
)
def test_otherwise_the_teacher_is_loaded_as_configured(fields, precision):
    cfg = _teacher(**fields)
    assert frozen_teacher_dtype(cfg, precision) is cfg


def test_auto_precision_follows_the_cpu(monkeypatch):
    from distill_gui.core import devices

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    assert frozen_teacher_dtype(_teacher(), "auto").dtype == "auto"
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    assert frozen_teacher_dtype(_teacher(), "auto").dtype == "bf16"
