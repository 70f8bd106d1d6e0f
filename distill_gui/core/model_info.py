"""What a model is, read from its config, tokenizer and weight files without loading its weights: its
architecture, parameters, vocabulary, layers and size on disk (:class:`ModelInfo`), for the pair check and the
memory estimate before anything is loaded."""

from __future__ import annotations

import json
import re
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill_gui.core.config import ModelConfig
from distill_gui.core.memory import format_bytes
from distill_gui.core.models import (
    PICKLE_SUFFIXES,
    ModelError,
    ModelSource,
    check_gguf,
    check_safety,
    check_token_ids,
    count_params,
    first_line,
    load_hint,
    load_tokenizer,
    resolve_source,
)


@dataclass(frozen=True)
class ModelInfo:
    """What a model is, read from its config and tokenizer without loading its weights."""

    source: ModelSource
    architecture: str
    model_type: str
    num_params: int
    vocab_size: int
    tokenizer_vocab_size: int
    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_attention_heads: int
    tie_word_embeddings: bool
    disk_dtype: str
    disk_bytes: int
    num_linear_layers: int
    linear_dims_total: int
    """Sum of (in_features + out_features) over the linear layers LoRA would adapt ('all-linear'):
    a LoRA adapter of rank r adds ``r * linear_dims_total`` parameters."""
    chat_template: bool | None = None
    """Whether the tokenizer carries a chat template (None: not known)."""

    @property
    def embedding_params(self) -> int:
        """Parameters in the input embedding and, when untied, the output head."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def lora_params(self, r: int) -> int:
        """Parameters a rank-``r`` LoRA on every linear layer but the head adds."""
        return r * self.linear_dims_total

    def summary(self) -> str:
        """One sentence, e.g. "LlamaForCausalLM, 3.5 M parameters, 4 layers, vocab 8,000 (tokenizer 8,000), 14 MB on disk"."""
        parts = [
            self.architecture,
            f"{format_count(self.num_params)} parameters",
            f"{self.num_layers} layer{'s' if self.num_layers != 1 else ''}",
            f"vocab {self.vocab_size:,} (tokenizer {self.tokenizer_vocab_size:,})",
        ]
        if self.disk_bytes:
            parts.append(f"{format_bytes(self.disk_bytes)} on disk ({self.disk_dtype})")
        if self.source.gguf_file:
            parts.append(f"{format_bytes(self.num_params * 4)} de-quantized (fp32)")
        if self.chat_template is False:
            parts.append("no chat template")
        return ", ".join(parts)


def format_count(n: int) -> str:
    """A parameter count for people: 950 K, 3.5 M, 1.24 B."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return str(n)


# ---- Describing without loading ---------------------------------------------------------------


_SAFETENSORS_DTYPES = {
    "F32": "fp32",
    "F16": "fp16",
    "BF16": "bf16",
    "F64": "fp64",
    "I8": "int8",
    "U8": "uint8",
    "F8_E4M3": "fp8",
    "F8_E5M2": "fp8",
}


def safetensors_counts(files: list[Path]) -> Counter[str]:
    """Values per dtype over the tensors of safetensors files, read from their headers (a few KB each);
    an unreadable file counts nothing."""
    counts: Counter[str] = Counter()
    for file in files:
        try:
            with file.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(min(length, 100_000_000)))
        except (OSError, ValueError, struct.error):
            continue
        for name, entry in header.items():
            if name != "__metadata__" and isinstance(entry, dict):
                size = 1
                for dim in entry.get("shape") or [1]:
                    size *= dim
                counts[entry.get("dtype", "?")] += size
    return counts


def _safetensors_dtype(files: list[Path]) -> str:
    """The most common weight dtype, read from the safetensors headers."""
    counts = safetensors_counts(files)
    if not counts:
        return "unknown"
    top = counts.most_common(1)[0][0]
    return _SAFETENSORS_DTYPES.get(top, top.lower())


_GGUF_TYPE_RE = re.compile(r"(?i)(?:^|[.\-_])((?:I?Q\d(?:_[A-Z0-9]+)*)|BF16|F16|F32)(?:\.gguf)$")


def _gguf_dtype(file: Path) -> str:
    """The quantization a GGUF file's name announces by convention (Q4_K_M, Q8_0, F16, ...).

    Reading it from the file would mean parsing every metadata field (the whole tokenizer), which
    takes seconds; the name is what people choose files by anyway.
    """
    match = _GGUF_TYPE_RE.search(file.name)
    return match.group(1).upper() if match else "gguf"


def _disk_facts(source: ModelSource) -> tuple[str, int]:
    if not source.is_local:
        return "unknown", 0
    folder = Path(source.path)
    if source.gguf_file:
        file = folder / source.gguf_file
        return _gguf_dtype(file), file.stat().st_size
    safetensors = sorted(folder.glob("*.safetensors"))
    if safetensors:
        return _safetensors_dtype(safetensors), sum(f.stat().st_size for f in safetensors)
    pickles = [f for f in folder.iterdir() if f.is_file() and f.name.endswith(PICKLE_SUFFIXES) and f.name != "training_args.bin"]
    return "pickle", sum(f.stat().st_size for f in pickles)


def _linear_dims(model: Any) -> tuple[int, int]:
    """(count, sum of in+out features) of the linear layers 'all-linear' LoRA adapts (all but the head)."""
    import torch

    head = model.get_output_embeddings()
    count = dims = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            count += 1
            dims += module.in_features + module.out_features
    return count, dims


_DESCRIBE_CACHE: dict[tuple, ModelInfo] = {}
_DESCRIBE_CACHE_SIZE = 16


def _describe_key(cfg: ModelConfig, source: ModelSource) -> tuple | None:
    if not source.is_local:
        return None
    target = Path(source.path) / (source.gguf_file or "config.json")
    try:
        stamp = target.stat().st_mtime_ns
    except OSError:
        return None
    return (source, stamp, cfg.tokenizer, cfg.trust_remote_code)


def describe_model(cfg: ModelConfig, role: str) -> ModelInfo:
    """Read a model's facts from its config and tokenizer without loading any weights.

    About a second for a model folder; a local GGUF file is described from its header alone
    (:mod:`distill_gui.core.gguf_describe`, a second or two). Answers are cached per file and settings.
    """
    source = resolve_source(cfg)
    check_safety(source, cfg, role)
    check_gguf(source)
    key = _describe_key(cfg, source)
    if key is not None and key in _DESCRIBE_CACHE:
        return _DESCRIBE_CACHE[key]
    if source.gguf_file and source.is_local:
        from distill_gui.core.gguf_describe import describe_gguf

        info = describe_gguf(cfg, role, source)  # the header alone: seconds where transformers takes a minute
    else:
        info = _describe(cfg, role, source)
    if key is not None:
        if len(_DESCRIBE_CACHE) >= _DESCRIBE_CACHE_SIZE:
            _DESCRIBE_CACHE.pop(next(iter(_DESCRIBE_CACHE)))
        _DESCRIBE_CACHE[key] = info
    return info


def _describe(cfg: ModelConfig, role: str, source: ModelSource) -> ModelInfo:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    if source.revision and not source.is_local:
        kwargs["revision"] = source.revision
    try:
        config = AutoConfig.from_pretrained(source.path, **kwargs)
    except (OSError, ValueError, KeyError, ImportError, TypeError) as exc:
        raise ModelError(
            f"{source.display}: could not read the {role} model config ({first_line(exc)}); {load_hint(source, role, None)}"
        ) from None
    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.trust_remote_code)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelError(
            f"{source.display}: {config.model_type} is not a causal language model transformers can build ({first_line(exc)})"
        ) from None
    tokenizer = load_tokenizer(cfg, role, source)
    check_token_ids(tokenizer, skeleton.get_input_embeddings().num_embeddings, source, role)
    text = config.get_text_config()
    num_linear, linear_dims = _linear_dims(skeleton)
    disk_dtype, disk_bytes = _disk_facts(source)
    architectures = getattr(config, "architectures", None) or [type(skeleton).__name__]
    hidden = int(getattr(text, "hidden_size", 0) or 0)
    return ModelInfo(
        source=source,
        architecture=architectures[0],
        model_type=config.model_type,
        num_params=count_params(skeleton),
        vocab_size=int(getattr(text, "vocab_size", 0) or skeleton.get_input_embeddings().num_embeddings),
        tokenizer_vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_layers=int(getattr(text, "num_hidden_layers", 0) or 0),
        intermediate_size=int(getattr(text, "intermediate_size", 0) or 4 * hidden),
        num_attention_heads=int(getattr(text, "num_attention_heads", 0) or 0),
        tie_word_embeddings=bool(getattr(text, "tie_word_embeddings", getattr(config, "tie_word_embeddings", False))),
        disk_dtype=disk_dtype,
        disk_bytes=disk_bytes,
        num_linear_layers=num_linear,
        linear_dims_total=linear_dims,
        chat_template=bool(getattr(tokenizer, "chat_template", None)),
    )
