"""What a GGUF model is, read from its header alone: no tensor is de-quantized and no model is built.

transformers' own path (``AutoConfig`` and ``AutoTokenizer`` with ``gguf_file``) parses every metadata
field with numpy, once per call, and :func:`distill_gui.core.model_info.describe_model` used to call it three
times: about a minute for SmolLM2-135M. Here the header is walked once in plain Python (the 49k-token
vocabulary is skipped, not decoded) and the facts come from it: the architecture, the parameter count
(the sum of the tensor table), the quantization (``general.file_type``), the vocabulary (the embedding's
rows), the linear layers LoRA would adapt; the tokenizer (its length, its chat template) is built from the file.
:func:`gguf_tokenizer_class` lets the tokenizer be built straight from the file by the class
``AutoTokenizer`` would choose, without the config pass that re-reads the whole header.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill_gui.core.gguf_header import GgufHeader, GgufTensor, gguf_metadata, read_gguf_header

if TYPE_CHECKING:
    from distill_gui.core.config import ModelConfig
    from distill_gui.core.model_info import ModelInfo
    from distill_gui.core.models import ModelSource

# llama.cpp's architecture name -> transformers' model_type, where they differ (as transformers' GGUF loader renames them)
_MODEL_TYPES = {
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
    "gemma3": "gemma3_text",
    "gemma4": "gemma4_text",
}
# tensors in a GGUF file that are not parameters of the transformers model
_NOT_PARAMETERS = ("rope_freqs.", "rope_factors_long.", "rope_factors_short.")
# tensors that are not the linear layers LoRA adapts ('all-linear' leaves the embeddings and the head alone)
_NOT_LINEAR = ("token_embd.", "output.", "position_embd.", "token_types.")


def gguf_model_type(metadata: dict[str, object]) -> str:
    """transformers' ``model_type`` for a GGUF file's ``general.architecture`` (and ``general.name``)."""
    arch = str(metadata.get("general.architecture", ""))
    if "llama" in arch and "mistral" in str(metadata.get("general.name", "")).lower():
        return "mistral"  # llama.cpp writes Mistral models as llama
    return _MODEL_TYPES.get(arch, arch)


def _int(value: object) -> int:
    """A metadata number; a per-layer array read as its largest value (its length when not read in full)."""
    if isinstance(value, list):
        return int(max(value, default=0))
    return int(value) if isinstance(value, (int, float)) else 0


def _quantization(header: GgufHeader, file: Path) -> str:
    """Q4_K_M, Q8_0, F16, ...: ``general.file_type`` as llama.cpp names it, else the most common tensor type."""
    import gguf

    file_type = header.metadata.get("general.file_type")
    if isinstance(file_type, int):
        try:
            return gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_")
        except ValueError:
            pass
    from distill_gui.core.model_info import _gguf_dtype

    named = _gguf_dtype(file)
    if named != "gguf":
        return named
    counts: dict[int, int] = {}
    for tensor in header.tensors:
        counts[tensor.ggml_type] = counts.get(tensor.ggml_type, 0) + tensor.count
    if not counts:
        return "gguf"
    top = max(counts, key=lambda t: counts[t])
    try:
        return gguf.GGMLQuantizationType(top).name
    except ValueError:
        return "gguf"


def _linear(tensor: GgufTensor) -> tuple[int, int]:
    """(layers, sum of in+out features) of one weight tensor: a 2-D weight is one linear layer, a 3-D one
    (a mixture of experts) is one per expert."""
    if not tensor.name.endswith(".weight") or tensor.name.startswith(_NOT_LINEAR) or len(tensor.dims) < 2:
        return 0, 0
    if len(tensor.dims) == 2:
        return 1, tensor.dims[0] + tensor.dims[1]
    experts = tensor.count // (tensor.dims[0] * tensor.dims[1])
    return experts, experts * (tensor.dims[0] + tensor.dims[1])


def _transformers_architecture(model_type: str, metadata: dict, names: tuple[str, ...], display: str) -> tuple[str, str]:
    """(architecture class, model_type) for a GGUF architecture transformers can load; else a ModelError."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING
    from transformers.integrations.gguf import GGUF_CONFIG_ARCHS, get_gguf_config
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from distill_gui.core.models import ModelError

    arch = str(metadata.get("general.architecture", ""))
    if arch in GGUF_CONFIG_ARCHS:
        config = get_gguf_config(metadata, names)
        return str((config.get("architectures") or [config["model_type"]])[0]), str(config["model_type"])
    known = model_type in GGUF_CONFIG_MAPPING or arch in GGUF_CONFIG_MAPPING
    architecture = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if not known or architecture is None:
        readable = sorted(k for k in (*GGUF_CONFIG_MAPPING, *GGUF_CONFIG_ARCHS) if k not in ("general", "tokenizer"))
        raise ModelError(
            f"{display}: a GGUF file of architecture {arch or '?'!r}, which transformers cannot load as a causal language "
            f"model (it reads GGUF files of {', '.join(readable)}); use the original model folder, or serve the file "
            "(llama.cpp's server, Ollama, LM Studio) and set teacher.url"
        )
    return str(architecture), model_type


def describe_gguf(cfg: ModelConfig, role: str, source: ModelSource) -> ModelInfo:
    """A local GGUF model's facts from its header and its tokenizer (the file's, or ``cfg.tokenizer``)."""
    from distill_gui.core.model_info import ModelInfo
    from distill_gui.core.models import ModelError, check_token_ids, load_tokenizer

    file = Path(source.path) / str(source.gguf_file)
    header = read_gguf_header(file)
    meta = header.metadata
    arch = str(meta.get("general.architecture", ""))
    if not arch:
        raise ModelError(f"{source.display}: the GGUF header has no general.architecture; the file is not a model or is damaged")
    names = tuple(t.name for t in header.tensors)
    architecture, model_type = _transformers_architecture(gguf_model_type(meta), meta, names, source.display)
    embedding = next((t for t in header.tensors if t.name == "token_embd.weight"), None)
    tokens = _int(meta.get("tokenizer.ggml.tokens"))
    vocab = (
        (embedding.dims[1] if embedding is not None and len(embedding.dims) == 2 else 0) or _int(meta.get(f"{arch}.vocab_size")) or tokens
    )
    if not tokens and not cfg.tokenizer:
        raise ModelError(
            f"{source.display}: the GGUF file holds no tokenizer (tokenizer.ggml.tokens); set {role}.tokenizer to the model's tokenizer folder"
        )
    # Built from the file by the class AutoTokenizer picks (a second or so): its length is not always the token
    # list's (a default special token may be added), and every id it gives needs an embedding row.
    tokenizer = load_tokenizer(cfg, role, source)
    check_token_ids(tokenizer, vocab, source, role)
    linear = [_linear(t) for t in header.tensors]
    hidden = _int(meta.get(f"{arch}.embedding_length"))
    return ModelInfo(
        source=source,
        architecture=architecture,
        model_type=model_type,
        num_params=sum(t.count for t in header.tensors if not t.name.startswith(_NOT_PARAMETERS)),
        vocab_size=vocab,
        tokenizer_vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_layers=_int(meta.get(f"{arch}.block_count")),
        intermediate_size=_int(meta.get(f"{arch}.feed_forward_length")) or 4 * hidden,
        num_attention_heads=_int(meta.get(f"{arch}.attention.head_count")),
        tie_word_embeddings="output.weight" not in names,
        disk_dtype=_quantization(header, file),
        disk_bytes=file.stat().st_size,
        num_linear_layers=sum(n for n, _ in linear),
        linear_dims_total=sum(d for _, d in linear),
        chat_template=bool(getattr(tokenizer, "chat_template", None)),
    )


def gguf_tokenizer_class(file: str | Path) -> Any:
    """The tokenizer class ``AutoTokenizer`` picks for this GGUF file's model type (read from the first
    metadata keys only), so the tokenizer can be built from the file without a config pass; None when unsure."""
    meta = gguf_metadata(file, ("general.architecture", "general.name"))
    if "general.architecture" not in meta:
        return None
    from transformers import TokenizersBackend
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES, tokenizer_class_from_name

    name = TOKENIZER_MAPPING_NAMES.get(gguf_model_type(meta))
    if isinstance(name, (tuple, list)):
        name = next((n for n in reversed(name) if n), None)
    found = tokenizer_class_from_name(name) if name else None
    if found is None or found.__name__ == "PythonBackend":
        return TokenizersBackend
    return found
