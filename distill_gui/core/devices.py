"""What a device can compute in: the one place that knows about bfloat16 and autocast precision."""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 instructions (AVX512-BF16 / AMX), as oneDNN reports it."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_supported(device: Any) -> bool:
    """Whether ``device`` computes in bfloat16 natively (CUDA compute capability 8+, MPS, a CPU with bf16)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        return cpu_has_bf16()
    return device.type == "mps"


def autocast_precision(precision: str, device: Any) -> str:
    """``training.precision`` resolved for ``device``: auto → bf16 where native, fp16 on older GPUs, else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if bf16_supported(device) else "fp16"
    if device.type == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


def frozen_teacher_dtype(teacher_cfg: Any, precision: str) -> Any:
    """The teacher's config with ``dtype: bf16`` where a run computes in bf16 on a CPU and the teacher's dtype is auto.

    The teacher is frozen and its matmuls run under the run's bf16 autocast anyway; with float32 weights
    autocast casts every weight to bf16 again at every step, and the weights take twice the memory.
    Measured on SmolLM2-135M-Instruct over 1024 tokens of prose on this repository's 2-core CPU: its
    forward 2.3x faster (16.4 s -> 7.1 s, under load); its log-probs at a KL of 1.3e-3 nats/token
    from the float32 teacher (3e-4 for float32 weights under bf16 autocast), the top token the same
    at 96% of positions (99%). ``teacher.dtype: fp32`` keeps float32 weights; a quantized teacher is
    left as it is.
    """
    from distill_gui.core.models import resolve_device

    if teacher_cfg.dtype != "auto" or teacher_cfg.quantization != "none":
        return teacher_cfg
    device = resolve_device(teacher_cfg.device)
    if device.type != "cpu" or autocast_precision(precision, device) != "bf16":
        return teacher_cfg
    return dataclasses.replace(teacher_cfg, dtype="bf16")


def generation_dtype(dtype: str, device: Any) -> str:
    """The weights' dtype for a model that only writes text: ``auto`` on a CPU that computes bfloat16 natively is
    ``bf16`` (as on a GPU that does); any other choice stays.

    Generation on a CPU is bound by the matmuls and the reads of weights and KV cache, all halved in bf16:
    SmolLM2-135M-Instruct wrote 255 tokens/s in batches of 16 on this repository's 2-core CPU against 128 in
    float32 (one prompt at a time 29.5 against 19.8; ``benchmarks/bench_generate.py --dtype``).
    """
    if dtype == "auto" and getattr(device, "type", None) == "cpu" and cpu_has_bf16():
        return "bf16"
    return dtype


def autocast_dtype(precision: str, device: Any) -> Any:
    """The torch dtype autocast runs in for ``precision`` on ``device`` (None: no autocast)."""
    import torch

    resolved = autocast_precision(precision, device)
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolved)
