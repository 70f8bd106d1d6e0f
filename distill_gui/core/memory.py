"""A rough estimate of the memory a distillation run needs, and whether the device has it.

The estimate adds up weights, gradients, optimizer state, activations and logits from the models'
sizes (:class:`~distill_gui.core.model_info.ModelInfo`) and the run settings. It is meant to warn before a
run starts ("total ~31 GB of 22 GB available — does not fit"), not to be exact: real use also depends
on the allocator, kernels and sequence lengths in the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from distill_gui.core.gguf_size import gguf_teacher_note

if TYPE_CHECKING:
    from distill_gui.core.config import RunConfig
    from distill_gui.core.model_info import ModelInfo

#: Share of the available memory a run may plan to use (the rest covers allocator slack, the
#: CUDA context, data loading and the estimate's own error).
FIT_MARGIN = 0.9

#: Bytes per weight of a quantized linear layer: int8 plus per-row scales; NF4 plus double-quantized
#: block scales (64-element blocks). Embeddings and the output head stay in the load dtype.
QUANTIZED_BYTES = {"8bit": 1.0 + 1 / 64, "4bit": 0.5 + 1 / 64}

#: Values kept for backward per token and layer, in units of the hidden size and of the MLP width:
#: attention input norm, q/k/v, attention output, the residual and the second norm are ~10 x hidden;
#: the gated MLP keeps its gate, up, activation and product, ~4 x intermediate. (Attention scores
#: are not kept: SDPA / flash attention recompute them.)
ACT_HIDDEN_FACTOR = 10
ACT_INTERMEDIATE_FACTOR = 4

# How many logit-sized blocks each method keeps alive is the method's own knowledge
# (``Method.memory`` in :mod:`distill_gui.core.methods`); this module adds up the rest.

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def format_bytes(n: float) -> str:
    """Sizes for people in binary units (as GPU tools show them): 950 B, 14 MB, 22.1 GB."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if abs(value) < 100 else f"{value:,.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def proc_field_bytes(path: str, field: str) -> int | None:
    """A ``field: N kB`` line of a /proc file (/proc/meminfo, /proc/self/status) in bytes (None where there is no
    such file or field)."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _meminfo_bytes(field: str) -> int | None:
    """A field of /proc/meminfo in bytes (None where there is no such file or field)."""
    return proc_field_bytes("/proc/meminfo", field)


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def system_memory_available() -> int:
    """Free system RAM in bytes: MemAvailable from /proc/meminfo, else the physical total."""
    available = _meminfo_bytes("MemAvailable")
    return available if available is not None else _physical_memory()


def system_memory_total() -> int:
    """All system RAM in bytes."""
    total = _meminfo_bytes("MemTotal")
    return total if total is not None else _physical_memory()


def device_memory(device: str = "auto") -> tuple[int, str]:
    """(bytes, description) of the memory a run on ``device`` can use: GPU total memory or free RAM."""
    import torch

    name = (device or "auto").lower()
    if name.startswith("cuda") or (name == "auto" and torch.cuda.is_available()):
        if torch.cuda.is_available():
            index = int(name[5:]) if name.startswith("cuda:") else torch.cuda.current_device()
            if index < torch.cuda.device_count():
                props = torch.cuda.get_device_properties(index)
                return int(props.total_memory), f"{props.name} (cuda:{index})"
    if name == "mps" or (name == "auto" and torch.backends.mps.is_available()):
        if torch.backends.mps.is_available():
            return int(torch.mps.recommended_max_memory()), "Apple GPU (mps)"
    return system_memory_available(), "system RAM"


def _weight_bytes(info: ModelInfo, quantization: str, dtype_bytes: float) -> float:
    if quantization in QUANTIZED_BYTES:
        embeddings = min(info.embedding_params, info.num_params)
        return (info.num_params - embeddings) * QUANTIZED_BYTES[quantization] + embeddings * dtype_bytes
    return info.num_params * dtype_bytes


def _layer_activation_values(info: ModelInfo) -> int:
    return ACT_HIDDEN_FACTOR * info.hidden_size + ACT_INTERMEDIATE_FACTOR * info.intermediate_size


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated bytes per part of a run and whether the total fits the device."""

    teacher_weights: int
    student_weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    trainable_params: int
    available: int
    available_label: str = "available"
    teacher_freed: bool = False
    """The teacher is loaded only before training (e.g. to build a cache) and freed: not in the training peak."""
    teacher_pass: int = 0
    """Activations of the teacher's pass before training (with ``teacher_freed``)."""
    note: str = ""
    """A sentence shown under the estimate (a GGUF teacher's de-quantized size: :mod:`distill_gui.core.gguf_size`)."""

    @property
    def training_peak(self) -> int:
        student = self.student_weights + self.gradients + self.optimizer + self.activations + self.logits
        return student + (0 if self.teacher_freed else self.teacher_weights)

    @property
    def total(self) -> int:
        """The peak: the training step, or the teacher's pass before training when that is larger."""
        if self.teacher_freed:
            return max(self.training_peak, self.teacher_weights + self.student_weights + self.teacher_pass)
        return self.training_peak

    @property
    def fits(self) -> bool:
        """Whether the total stays within :data:`FIT_MARGIN` of the available memory."""
        return self.available > 0 and self.total <= self.available * FIT_MARGIN

    def parts(self) -> list[tuple[str, int]]:
        return [
            ("Teacher weights (freed)" if self.teacher_freed else "Teacher weights", self.teacher_weights),
            ("Student weights", self.student_weights),
            ("Gradients", self.gradients),
            ("Optimizer state", self.optimizer),
            ("Activations", self.activations),
            ("Logits", self.logits),
        ]

    def shown_parts(self) -> list[tuple[str, int]]:
        """The parts worth showing (no teacher line when the run has no teacher)."""
        return [(name, size) for name, size in self.parts() if size or not name.startswith("Teacher weights")]

    def verdict(self) -> str:
        if self.available <= 0:
            return "available memory unknown"
        return "fits" if self.fits else "does not fit"

    def lines(self) -> list[str]:
        """One line per part, then the total, e.g. "Teacher weights      1.2 GB"."""
        out = [f"{name:<17} {format_bytes(size):>10}" for name, size in self.shown_parts()]
        available = format_bytes(self.available) if self.available > 0 else "unknown"
        out.append(f"{'Total':<17} {'~' + format_bytes(self.total):>10}  of {available} {self.available_label} — {self.verdict()}")
        return out + ([self.note] if self.note else [])

    def summary(self) -> str:
        """One sentence: "Teacher weights 1.2 GB, ..., total ~3.4 GB of 22.1 GB available — fits"."""
        parts = ", ".join(f"{name if i == 0 else name.lower()} {format_bytes(size)}" for i, (name, size) in enumerate(self.shown_parts()))
        available = format_bytes(self.available) if self.available > 0 else "unknown memory"
        return f"{parts}, total ~{format_bytes(self.total)} of {available} {self.available_label} — {self.verdict()}" + (
            f". {self.note}" if self.note else ""
        )


def estimate_memory(
    teacher: ModelInfo | None,
    student: ModelInfo,
    *,
    method_kind: str = "kd",
    config: RunConfig | None = None,
    lora_enabled: bool = False,
    lora_r: int = 16,
    teacher_quantization: str = "none",
    student_quantization: str = "none",
    teacher_dtype_bytes: float = 2,
    student_dtype_bytes: float = 2,
    batch_size: int = 8,
    seq_len: int = 512,
    chunk_size: int = 512,
    cache_teacher: bool = False,
    gradient_checkpointing: bool = False,
    device: str = "auto",
    device_total_bytes: int | None = None,
) -> MemoryEstimate:
    """Estimate the peak memory of one training step.

    - Weights: parameters x dtype bytes; quantized linear layers use :data:`QUANTIZED_BYTES`.
    - Gradients: trainable parameters in their dtype (LoRA adapters are fp32, 4 bytes).
    - Optimizer: AdamW keeps two fp32 states, 8 bytes per trainable parameter. With LoRA only the
      adapters train: ``r x sum(in + out)`` over the adapted linear layers.
    - Activations: ``batch x seq x layers x (10 x hidden + 4 x intermediate) x dtype bytes`` for the
      student; with gradient checkpointing only each layer's input plus one layer's full set.
    - The method's share (``Method.memory``): its logit blocks (KD builds [chunk, vocab] blocks only,
      never the full logits; SFT's cross-entropy holds the full [batch, seq, vocab] block), the
      teacher's activations, and whether the teacher's weights stay (live KD) or are freed before
      training (KD from a teacher cache: the peak is then the larger of the cache pass and training).

    ``config`` gives the method and its settings; without one, ``method_kind``, ``chunk_size`` and
    ``cache_teacher`` do. ``device_total_bytes`` overrides the memory found on ``device``.
    """
    from distill_gui.core import methods
    from distill_gui.core.config import config_from_dict

    if config is None:
        config = config_from_dict(
            {
                "method": {
                    "kind": method_kind,
                    "kd": {"chunk_size": chunk_size, "cache_teacher": cache_teacher, "top_k": 32 if cache_teacher else 0},
                }
            }
        )
    method = methods.method_for(config)
    positions = batch_size * seq_len
    share = method.memory(
        config,
        methods.MemoryInputs(
            positions=positions,
            student_vocab=student.vocab_size,
            student_hidden=student.hidden_size,
            student_dtype_bytes=student_dtype_bytes,
            teacher_vocab=teacher.vocab_size if teacher is not None else 0,
            teacher_hidden=teacher.hidden_size if teacher is not None else 0,
            teacher_dtype_bytes=teacher_dtype_bytes,
            teacher_layer_values=_layer_activation_values(teacher) if teacher is not None else 0,
            student_layers=student.num_layers,
            student_layer_values=_layer_activation_values(student),
            student_params=student.num_params,
        ),
    )
    uses_teacher = teacher is not None and (share.teacher_weights_resident or share.teacher_weights_at_start)
    teacher_weights = _weight_bytes(teacher, teacher_quantization, teacher_dtype_bytes) if uses_teacher and teacher is not None else 0
    student_weights = _weight_bytes(student, student_quantization, student_dtype_bytes)

    gradients: float
    if lora_enabled:
        trainable = student.lora_params(lora_r)
        gradients = trainable * 4
    else:
        trainable = student.num_params
        gradients = trainable * student_dtype_bytes
    optimizer = trainable * 8

    per_layer = positions * _layer_activation_values(student) * student_dtype_bytes
    if gradient_checkpointing:
        activations = positions * student.hidden_size * student.num_layers * student_dtype_bytes + per_layer
    else:
        activations = per_layer * student.num_layers
    freed = bool(uses_teacher and share.teacher_weights_at_start and not share.teacher_weights_resident)
    teacher_pass = 0
    if uses_teacher and teacher is not None:
        teacher_pass = int(positions * (_layer_activation_values(teacher) + teacher.hidden_size) * teacher_dtype_bytes)
    if not freed:
        activations += share.teacher_activations

    if device_total_bytes is not None:
        available, label = int(device_total_bytes), "available"
    else:
        available, where = device_memory(device)
        label = f"available ({where})"
    return MemoryEstimate(
        teacher_weights=int(teacher_weights),
        student_weights=int(student_weights),
        gradients=int(gradients),
        optimizer=int(optimizer),
        activations=int(activations),
        logits=int(share.logits),
        trainable_params=int(trainable),
        available=int(available),
        available_label=label,
        teacher_freed=freed,
        teacher_pass=teacher_pass,
        note=gguf_teacher_note(teacher.source, teacher.num_params, teacher_dtype_bytes, int(available))
        if uses_teacher and teacher is not None
        else "",
    )


def _dtype_bytes(dtype_name: str, device_name: str) -> int:
    from distill_gui.core.models import ModelError, resolve_device, resolve_dtype

    try:
        dtype = resolve_dtype(dtype_name, resolve_device(device_name))
    except ModelError:
        return 4
    return dtype.itemsize


def estimate_for_config(
    config: RunConfig,
    teacher_info: ModelInfo | None,
    student_info: ModelInfo,
    device_total_bytes: int | None = None,
) -> MemoryEstimate:
    """:func:`estimate_memory` with every setting taken from a run config.

    The teacher is sized in the dtype the run loads it in: a CPU run computing in bf16 loads a frozen
    teacher of dtype auto in bf16 (:func:`~distill_gui.core.devices.frozen_teacher_dtype`).
    """
    from distill_gui.core.devices import frozen_teacher_dtype

    teacher = frozen_teacher_dtype(config.teacher, config.training.precision)
    return estimate_memory(
        teacher_info,
        student_info,
        config=config,
        lora_enabled=config.student.lora.enabled,
        lora_r=config.student.lora.r,
        teacher_quantization=config.teacher.quantization,
        student_quantization=config.student.quantization,
        teacher_dtype_bytes=_dtype_bytes(teacher.dtype, teacher.device),
        student_dtype_bytes=_dtype_bytes(config.student.dtype, config.student.device),
        batch_size=config.training.batch_size,
        seq_len=config.data.max_length,
        gradient_checkpointing=config.training.gradient_checkpointing,
        device=config.student.device,
        device_total_bytes=device_total_bytes,
    )
