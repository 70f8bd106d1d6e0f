"""What a GGUF teacher costs when transformers loads it: the de-quantized size, and when to serve it instead.

transformers reads a GGUF file by de-quantizing every tensor to the load dtype (fp32 on a CPU, bf16 or
fp16 on a GPU), so a 4 GB Q4 file of a 7B model takes about 28 GB in fp32. Past the free memory the
teacher is better left in a server that runs the quantized file as it is (llama.cpp's server, Ollama,
LM Studio) and reached through ``teacher.url``: it then writes text (generate-data, SFT on its traces).
"""

from __future__ import annotations

from pathlib import Path


def gguf_file_bytes(path: str, gguf_file: str | None = None) -> int:
    """The size on disk of the GGUF file at ``path`` (a .gguf file, or a folder holding ``gguf_file``); 0 if unreadable."""
    file = Path(path) / gguf_file if gguf_file else Path(path)
    try:
        return file.stat().st_size if file.is_file() else 0
    except OSError:
        return 0


def gguf_load_note(file_bytes: int, num_params: int, dtype_bytes: float, available: int, dtype_name: str = "") -> str:
    """One sentence naming both numbers: the file's size and the de-quantized size transformers loads; past the
    ``available`` memory (bytes; 0 when unknown) it suggests the served path."""
    from distill_gui.core.memory import format_bytes  # memory imports this module

    loaded = int(num_params * dtype_bytes)
    dtype = f" ({dtype_name})" if dtype_name else ""
    note = (
        f"The teacher is a {format_bytes(file_bytes)} GGUF file; transformers de-quantizes it on load to about "
        f"{format_bytes(loaded)}{dtype}."
    )
    if available > 0 and loaded > available:
        note += (
            f" That is more than the {format_bytes(available)} available: serve the GGUF file as it is (llama.cpp's server, "
            "Ollama or LM Studio) and set teacher.url (and teacher.model) — a served teacher writes the traces for "
            "generate-data and SFT."
        )
    return note


def gguf_teacher_note(teacher_source: object, num_params: int, dtype_bytes: float, available: int) -> str:
    """:func:`gguf_load_note` for a described teacher (``ModelInfo.source``); '' when it is not a GGUF file."""
    if getattr(teacher_source, "kind", "") != "gguf":
        return ""
    size = gguf_file_bytes(getattr(teacher_source, "path", ""), getattr(teacher_source, "gguf_file", None))
    dtype_name = {4: "fp32", 2: "16-bit"}.get(int(dtype_bytes), "")
    return gguf_load_note(size, num_params, dtype_bytes, available, dtype_name)
