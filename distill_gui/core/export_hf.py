"""A standalone Hugging Face model folder: merged weights as safetensors, the tokenizer and its chat template.

The folder loads with ``AutoModelForCausalLM.from_pretrained`` alone — no adapter, no base model, no
distill-gui. Weights tied in the model (the output head sharing the input embeddings) stay tied: they
are written once and the config says so. Only safetensors are written; a pickle weight file is never
part of an export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill_gui.core.export_source import ExportError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")

_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def source_dtype(folder: str | Path | None) -> str:
    """The dtype a model folder's config.json declares (``fp32``, ``bf16``, ``fp16``), fp32 when it names none."""
    if folder is None:
        return "fp32"
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "fp32"
    value = config.get("dtype") or config.get("torch_dtype") or "float32"
    return _DTYPES.get(str(value), "fp32")


def ties_output_to_input(model: Any) -> bool:
    """True when the model's output head is the same tensor as its input embeddings."""
    output = model.get_output_embeddings()
    return output is not None and output.weight is model.get_input_embeddings().weight


def write_hf_folder(model: Any, tokenizer: Any, folder: Path, dtype: str = "fp32") -> list[Path]:
    """Write ``model`` (merged, on the CPU) and ``tokenizer`` into ``folder``; returns the files written."""
    import torch

    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    tied = ties_output_to_input(model)
    model = model.to(dtype=table[dtype])
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise ExportError(f"{folder}: the model wrote pickle weight files ({', '.join(pickles)}); only safetensors are exported")
    if tied:
        check_tied(folder)
    return sorted(p for p in folder.iterdir() if p.is_file())


def check_tied(folder: Path) -> None:
    """A tied model's folder must say it is tied and hold the shared tensor once (no separate head)."""
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    text = config.get("text_config") or config
    if not (text.get("tie_word_embeddings", config.get("tie_word_embeddings", True))):
        raise ExportError(f"{folder}/config.json: the model's head is tied to its embeddings but the config says it is not")
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            if any(key.endswith("lm_head.weight") for key in f.keys()):
                raise ExportError(f"{file}: holds a separate lm_head.weight although the head is tied to the embeddings")
