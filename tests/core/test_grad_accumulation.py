"""A step's gradient is the per-token mean over the whole optimizer step, however it is split.

Rows of very unequal length make the difference visible: with a mean of micro-batch means (what the
Trainer does for a loss that is not token-normalised) batch 4 x accumulation 2 is tens of percent
away from batch 8 x 1. Gradients are read just before the optimizer step, with clipping off.
"""

from __future__ import annotations

import json

import pytest
import torch

from distill_gui.core.config import config_from_dict
from distill_gui.core.training import callbacks, train


@pytest.fixture(scope="module")
def uneven_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("uneven") / "train.jsonl"
    rows = []
    for i in range(8):
        a, b = i + 1, i + 2
        steps = " ".join(f"{a} + {b} = {a + b}." for _ in range(1 if i % 3 else 16))  # 1 or 16 repeats
        rows.append({"prompt": f"Question: What is {a} plus {b}? Answer:", "completion": f" {steps} #### {a + b}"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def step_gradient(monkeypatch, tmp_path, tiny_pair, data, kind, batch, accumulation, **kd):
    """The student's gradient at the first optimizer step (flattened), for one way of splitting 8 rows."""
    grads = {}
    make = callbacks.make_event_bridge

    def recording_bridge():
        base = make()

        class Recording(base):
            def on_pre_optimizer_step(self, args, state, control, **kwargs):
                grads["g"] = torch.cat([p.grad.detach().flatten().clone() for p in self.trainer.model.parameters() if p.grad is not None])
                return super().on_pre_optimizer_step(args, state, control, **kwargs)

        return Recording

    monkeypatch.setattr(callbacks, "make_event_bridge", recording_bridge)
    teacher, student = tiny_pair
    config = config_from_dict({
        "teacher": {"path": str(teacher)},
        "student": {"path": str(student)},
        "data": {"train": str(data), "max_length": 256},
        "method": {"kind": kind, "kd": {"alpha": 0.5, "chunk_size": 16, **kd}},
        "training": {"max_steps": 1, "batch_size": batch, "gradient_accumulation_steps": accumulation, "max_grad_norm": 0.0,
                     "precision": "fp32", "save_steps": 0, "learning_rate": 1e-3, "seed": 3},
    })
    outcome = train(config, runs_root=tmp_path / f"{kind}-{batch}x{accumulation}")
    assert outcome.state == "finished"
    return grads["g"]


@pytest.mark.parametrize("kind, kd", [("sft", {}), ("kd", {}), ("kd", {"top_k": 8, "cache_teacher": True})],
                         ids=["sft", "kd", "kd-cached"])
def test_gradient_is_the_same_however_the_step_is_split(monkeypatch, tmp_path, tiny_pair, uneven_data, kind, kd):
    whole = step_gradient(monkeypatch, tmp_path, tiny_pair, uneven_data, kind, 8, 1, **kd)
    for batch, accumulation in ((4, 2), (2, 4), (1, 8)):
        split = step_gradient(monkeypatch, tmp_path, tiny_pair, uneven_data, kind, batch, accumulation, **kd)
        gap = float((split - whole).norm() / whole.norm())
        print(f"{kind} batch {batch} x accumulation {accumulation}: |g - g(8x1)| / |g(8x1)| = {gap:.2e}")
        assert gap < 1e-4, f"batch {batch} x accumulation {accumulation}: gradient {gap:.2%} away from batch 8 x 1"


@pytest.mark.slow
def test_two_processes_of_batch_4_train_like_one_of_batch_8(tmp_path, tiny_pair, uneven_data):
    """Under torchrun, the step's token count is global: the same loss and the same step as one process."""
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    from distill_gui.core.runs import RunDir

    teacher, student = tiny_pair
    config = tmp_path / "kd.yaml"
    config.write_text(json.dumps({
        "teacher": {"path": str(teacher)}, "student": {"path": str(student)},
        "data": {"train": str(uneven_data), "max_length": 256},
        "method": {"kind": "kd", "kd": {"alpha": 0.5, "chunk_size": 16}},
        "training": {"max_steps": 1, "max_grad_norm": 0.0, "precision": "fp32", "save_steps": 0, "learning_rate": 1e-3,
                     "seed": 3, "logging_steps": 1},
    }))
    bin_dir = Path(sys.executable).parent
    results = {}
    for name, launch, batch in (("one", [str(bin_dir / "distill-gui")], 8),
                                ("two", [str(bin_dir / "torchrun"), "--nproc_per_node", "2", "-m", "distill_gui"], 4)):
        runs = tmp_path / name
        command = launch + ["train", str(config), "--runs-dir", str(runs), f"training.batch_size={batch}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        run = RunDir(next(runs.iterdir()))
        step = [m for m in run.metrics() if m["event"] == "StepLogged"][0]
        results[name] = (step["loss"], load_file(str(run.final_model() / "model.safetensors")))
    assert results["two"][0] == pytest.approx(results["one"][0], rel=1e-5)
    for key, value in results["one"][1].items():
        torch.testing.assert_close(results["two"][1][key], value, rtol=1e-4, atol=1e-6)
