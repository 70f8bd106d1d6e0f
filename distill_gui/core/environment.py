"""What this machine offers a distillation run: library versions and devices (``distill-gui info``)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

from distill_gui.core.devices import cpu_has_bf16
from distill_gui.core.hub import hub_offline
from distill_gui.core.memory import format_bytes, system_memory_available, system_memory_total

LIBRARIES = ("torch", "transformers", "peft", "accelerate", "datasets", "trl", "bitsandbytes", "gguf", "PySide6-Essentials")
NOT_INSTALLED = "not installed"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def _bitsandbytes_status() -> tuple[bool, str]:
    """Whether bitsandbytes imports (it needs a matching backend); the error's first line if not."""
    if _version("bitsandbytes") == NOT_INSTALLED:
        return False, NOT_INSTALLED
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # any import failure means 8-bit/4-bit loading will not work
        lines = str(exc).strip().splitlines()
        return False, f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"
    return True, "ok"


def _devices() -> dict:
    import torch

    info: dict = {
        "cpu_count": os.cpu_count() or 0,
        "ram_total": system_memory_total(),
        "ram_available": system_memory_available(),
        "cpu_bf16": cpu_has_bf16(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda or "none",
        "gpus": [],
        "mps_available": bool(torch.backends.mps.is_available()),
    }
    if info["cuda_available"]:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            with torch.cuda.device(index):
                bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            info["gpus"].append(
                {
                    "index": index,
                    "name": props.name,
                    "memory": int(props.total_memory),
                    "capability": f"{props.major}.{props.minor}",
                    "bf16": bool(bf16),
                }
            )
    return info


def environment_report() -> dict:
    """Versions and devices as a plain mapping (JSON-friendly)."""
    bnb_ok, bnb_detail = _bitsandbytes_status()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in LIBRARIES},
        "devices": _devices(),
        "bitsandbytes_usable": bnb_ok,
        "bitsandbytes_detail": bnb_detail,
        "hf_hub_offline": hub_offline(),
    }


def format_report(report: dict) -> str:
    """The report as aligned lines for a terminal."""
    dev = report["devices"]
    lines = [f"{'python':<19} {report['python']}", f"{'platform':<19} {report['platform']}"]
    lines += [f"{name:<19} {version}" for name, version in report["versions"].items()]
    lines.append(
        f"{'cpu':<19} {dev['cpu_count']} cores, RAM {format_bytes(dev['ram_total'])} "
        f"({format_bytes(dev['ram_available'])} available), bf16 {'yes' if dev['cpu_bf16'] else 'no'}"
    )
    if dev["cuda_available"]:
        lines.append(f"{'cuda':<19} CUDA {dev['cuda_version']}, {len(dev['gpus'])} GPU(s)")
        for gpu in dev["gpus"]:
            lines.append(
                f"{'  cuda:' + str(gpu['index']):<19} {gpu['name']}, {format_bytes(gpu['memory'])}, "
                f"compute {gpu['capability']}, bf16 {'yes' if gpu['bf16'] else 'no'}"
            )
    else:
        built = f" (torch built for CUDA {dev['cuda_version']})" if dev["cuda_version"] != "none" else " (CPU-only torch)"
        lines.append(f"{'cuda':<19} not available{built}")
    lines.append(f"{'mps':<19} {'available' if dev['mps_available'] else 'not available'}")
    bnb = "usable" if report["bitsandbytes_usable"] else f"not usable ({report['bitsandbytes_detail']})"
    lines.append(f"{'quantization':<19} bitsandbytes {bnb}")
    lines.append(f"{'hub':<19} {'offline (HF_HUB_OFFLINE)' if report['hf_hub_offline'] else 'online allowed'}")
    return "\n".join(lines)
