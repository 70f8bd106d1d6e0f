"""What a device can compute in: the one place that knows about bfloat16 and autocast precision."""

from __future__ import annotations

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
