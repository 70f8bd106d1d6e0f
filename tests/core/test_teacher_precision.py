"""A frozen teacher of a bf16 run on a CPU is loaded in bf16 (autocast would cast its weights every step)."""

from __future__ import annotations

import pytest

from distill_gui.core.config import ModelConfig
from distill_gui.core.devices import frozen_teacher_dtype


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


def test_a_teacher_that_only_writes_text_is_loaded_in_bf16_where_the_cpu_computes_it(monkeypatch, tiny_pair, tmp_path, capsys):
    """generate-data's --dtype auto: bf16 on a CPU with native bf16 (said on stderr), float32 on one without; an
    explicit --dtype is kept."""
    import json

    import torch

    from distill_gui.cli import main
    from distill_gui.core import devices, models

    seen = []
    real = models.load_model
    monkeypatch.setattr(models, "load_model", lambda cfg, role, **kw: seen.append(real(cfg, role, **kw)) or seen[-1])
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "What is 2 plus 3?", "answer": "#### 5"}) + "\n", encoding="utf-8")
    for has_bf16, dtype, expected in ((True, "auto", torch.bfloat16), (False, "auto", torch.float32), (True, "fp32", torch.float32)):
        monkeypatch.setattr(devices, "cpu_has_bf16", lambda has=has_bf16: has)
        out = tmp_path / f"traces-{has_bf16}-{dtype}.jsonl"
        code = main(["generate-data", "--teacher", str(tiny_pair[0]), "--data", str(data), "--out", str(out), "--device", "cpu",
                     "--dtype", dtype, "--max-new-tokens", "4", "--no-verify"])
        err = capsys.readouterr().err
        assert code == 0, err
        assert seen[-1].model.dtype == expected
        assert ("teacher weights in bf16" in err) == (expected == torch.bfloat16 and dtype == "auto")
