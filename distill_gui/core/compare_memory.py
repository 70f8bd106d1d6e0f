"""What a compared model weighs: its size and parameters on disk (read from the safetensors headers, before
loading), whether its weights would fit the free memory, and the peak memory while it is scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill_gui.core.memory import proc_field_bytes
from distill_gui.core.model_info import safetensors_counts
from distill_gui.core.model_refs import ModelRef


def disk_facts(ref: ModelRef) -> tuple[int, int]:
    """(bytes of weights on disk, parameters read from safetensors headers; 0 when unknown)."""
    path = Path(ref.path).expanduser()
    if path.is_file():
        return path.stat().st_size, 0
    if not path.is_dir():
        return 0, 0
    weights = sorted(path.glob("*.safetensors"))
    size = sum(f.stat().st_size for f in weights) or sum(f.stat().st_size for f in path.glob("*.gguf"))
    adapter = Path(ref.adapter) if ref.adapter else None
    if adapter is not None and adapter.is_dir():
        size += sum(f.stat().st_size for f in adapter.glob("*.safetensors"))
    return size, sum(safetensors_counts(weights).values())


def check_memory(ref: ModelRef, settings: Any, params: int) -> str | None:
    """A one-line reason when the model's weights alone would not fit the free memory (on ``settings.device``), else None."""
    if not params:
        return None
    from distill_gui.core.memory import device_memory, format_bytes
    from distill_gui.core.models import resolve_device, resolve_dtype

    device = resolve_device(settings.device)
    dtype = resolve_dtype("auto", device)
    need = params * dtype.itemsize * 1.2
    free, where = device_memory(settings.device)
    if need > free:
        return (
            f"needs about {format_bytes(need)} to load ({params:,} parameters in {str(dtype).replace('torch.', '')}) "
            f"but {format_bytes(free)} of {where} is free; close other programs or use a machine with more memory"
        )
    return None


def _rss_bytes(field_name: str) -> int | None:
    """A field of this process's /proc/self/status in bytes (VmRSS, VmHWM)."""
    return proc_field_bytes("/proc/self/status", field_name)


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS to its current value (Linux: /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class MemoryMeter:
    """Peak memory of a loaded model while it is scored.

    Started once the model is loaded and warmed up: on a GPU the peak allocation from then on (the
    weights are allocated already, so they count); on a CPU the model's weight bytes plus the growth
    of the process's peak RSS during scoring (Linux resets the peak through /proc/self/clear_refs), so
    the one-time memory of torch's first forward pass in a process is not charged to one model.
    """

    def __init__(self, model):
        import torch

        device = next(model.parameters()).device
        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.device = device
        self.weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
        self.start = _rss_bytes("VmRSS") or 0
        self.resettable = not self.cuda and _reset_peak_rss()

    def peak_mb(self) -> float:
        import torch

        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        now = _rss_bytes("VmHWM" if self.resettable else "VmRSS") or 0
        return (self.weights + max(0, now - self.start)) / 2**20
