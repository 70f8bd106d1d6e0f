"""Output heads: how a causal LM turns its last hidden states into logits.

The chunked KD loss and the teacher cache never call the model's ``forward`` for the logits; they
multiply the final hidden states by the output embedding themselves. For most architectures that is
all ``forward`` does, but some post-process the result, and skipping that gives wrong distributions:

* Gemma-2/3 (and other Gemma-style heads): ``cap * tanh(logits / cap)`` with
  ``config.final_logit_softcapping`` (RecurrentGemma: ``config.logits_soft_cap``);
* Granite (all Granite causal LMs): ``logits / config.logits_scaling``;
* Cohere / Command-R: ``logits * config.logit_scale``; HyperCLOVA X: ``logits * config.logits_scaling``;
  Falcon-H1: ``logits * config.lm_head_multiplier``.

:func:`output_head` reads this from the model's config (through PEFT and DDP wrappers) into an
:class:`OutputHead`. Architectures are listed by ``model_type``; one that is not listed, or whose
head is not a plain linear layer, raises :class:`UnsupportedHeadError` rather than train on logits
that differ from the model's own. :func:`head_postprocessing` gives the same answer from a config
alone, so a run can refuse before loading any weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from distill_gui.core.errors import UserError

# model_type -> how the logits are post-processed after ``hidden @ W.T (+ b)``.
# "plain": nothing; "softcap": config.final_logit_softcapping (None = off); the others name the config
# field and the operation. Every entry was checked against the model's ``forward`` in transformers.
_PLAIN = frozenset(
    {
        "apertus",
        "arcee",
        "bamba",
        "bitnet",
        "bloom",
        "codegen",
        "ctrl",
        "cwm",
        "dbrx",
        "deepseek_v2",
        "deepseek_v3",
        "diffllama",
        "dots1",
        "ernie4_5",
        "ernie4_5_moe",
        "exaone4",
        "falcon",
        "falcon_mamba",
        "gemma",
        "glm",
        "glm4",
        "glm4_moe",
        "gpt-sw3",
        "gpt2",
        "gpt_bigcode",
        "gpt_neo",
        "gpt_neox",
        "gpt_oss",
        "gptj",
        "helium",
        "hunyuan_v1_dense",
        "hunyuan_v1_moe",
        "jamba",
        "jetmoe",
        "lfm2",
        "lfm2_moe",
        "llama",
        "llama4_text",
        "mamba",
        "mamba2",
        "mellum",
        "minimax",
        "ministral",
        "ministral3",
        "mistral",
        "mixtral",
        "mpt",
        "nemotron",
        "olmo",
        "olmo2",
        "olmo3",
        "olmoe",
        "openai-gpt",
        "opt",
        "persimmon",
        "phi",
        "phi3",
        "phimoe",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
        "qwen3_next",
        "seed_oss",
        "smollm3",
        "stablelm",
        "starcoder2",
        "xglm",
        "zamba",
        "zamba2",
    }
)
_POSTPROCESSING: dict[str, tuple[str, str]] = {
    # model_type: (operation, config field)
    "gemma2": ("softcap", "final_logit_softcapping"),
    "gemma3_text": ("softcap", "final_logit_softcapping"),
    "vaultgemma": ("softcap", "final_logit_softcapping"),
    "nanochat": ("softcap", "final_logit_softcapping"),
    "recurrent_gemma": ("softcap", "logits_soft_cap"),
    "granite": ("divide", "logits_scaling"),
    "granitemoe": ("divide", "logits_scaling"),
    "granitemoeshared": ("divide", "logits_scaling"),
    "granitemoehybrid": ("divide", "logits_scaling"),
    "cohere": ("multiply", "logit_scale"),
    "cohere2": ("multiply", "logit_scale"),
    "hyperclovax": ("multiply", "logits_scaling"),
    "falcon_h1": ("multiply", "lm_head_multiplier"),
}


POST_PROCESSED_MODEL_TYPES = frozenset(_POSTPROCESSING)
"""Model types whose ``forward`` scales or soft-caps the logits after the head."""


class UnsupportedHeadError(UserError, ValueError):
    """A model whose logits the chunked KD path cannot reproduce; the message names the model type."""


@dataclass(frozen=True)
class OutputHead:
    """``logits = softcap(scale * (hidden @ weight.T + bias))``, as the model's ``forward`` computes them.

    ``weight [V, H]`` (and ``bias [V]``) are the model's own tensors (gradients reach them);
    ``softcap`` is ``cap * tanh(x / cap)``, off when None.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    scale: float = 1.0
    softcap: float | None = None

    @property
    def is_plain(self) -> bool:
        return self.scale == 1.0 and self.softcap is None

    def postprocess_(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply the scale and the soft cap to raw ``hidden @ W.T + b`` logits, in place; returns them."""
        if self.scale != 1.0:
            logits.mul_(self.scale)
        if self.softcap is not None:
            logits.div_(self.softcap).tanh_().mul_(self.softcap)
        return logits

    def logits(self, hidden: torch.Tensor, vocab: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The model's logits for ``hidden [..., H]`` over the first ``vocab`` tokens (default all), as ``dtype``.

        The matmul runs in the common dtype of ``hidden`` and the weight; the post-processing in ``dtype``
        (default: that common dtype, at least float32).
        """
        weight = self.weight if vocab is None else self.weight[:vocab]
        mm_dtype = torch.promote_types(hidden.dtype, weight.dtype)
        dtype = dtype or torch.promote_types(mm_dtype, torch.float32)
        out = (hidden.to(mm_dtype) @ weight.to(mm_dtype).T).to(dtype)
        if self.bias is not None:
            out = out + (self.bias if vocab is None else self.bias[:vocab]).to(dtype)
        return self.postprocess_(out)

    def to(self, device: torch.device | str) -> "OutputHead":
        """The same head with its tensors on ``device`` (unchanged, same tensors, when already there)."""
        return replace(self, weight=self.weight.to(device), bias=None if self.bias is None else self.bias.to(device))

    def detach(self) -> "OutputHead":
        return replace(self, weight=self.weight.detach(), bias=None if self.bias is None else self.bias.detach())


def unwrap(model: Any) -> Any:
    """The transformers model inside DDP / accelerate and PEFT wrappers."""
    inner = model
    for _ in range(4):
        if hasattr(inner, "module") and not hasattr(inner, "get_decoder"):
            inner = inner.module  # DDP / accelerate wrappers
        elif hasattr(inner, "get_base_model"):
            inner = inner.get_base_model()  # PEFT
        else:
            break
    return inner


def _number(config: Any, field: str, model_type: str) -> float | None:
    value = getattr(config, field, None)
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value) or value == 0.0:
        raise UnsupportedHeadError(f"{model_type}: config.{field} = {value!r}; the logits would not be finite")
    return value


def head_postprocessing(config: Any) -> tuple[float, float | None]:
    """``(scale, softcap)`` that the model's ``forward`` applies to ``hidden @ W.T`` (1.0 and None: none).

    Reads a transformers config (``PretrainedConfig`` or anything with ``model_type`` and the fields).
    Raises :class:`UnsupportedHeadError` for a model type whose logits post-processing is not known here.
    """
    model_type = getattr(config, "model_type", None) or "?"
    if model_type in _PLAIN:
        return 1.0, None
    if model_type not in _POSTPROCESSING:
        raise UnsupportedHeadError(
            f"model type {model_type!r}: its output head is not known to the chunked KD path (some architectures "
            "scale or soft-cap the logits after the head), so logit KD would train on wrong distributions; "
            "use method.kind: sft, or a teacher and student of a supported architecture (e.g. llama, qwen2, "
            "mistral, gemma2, granite, cohere)"
        )
    operation, field = _POSTPROCESSING[model_type]
    value = _number(config, field, model_type)
    if operation == "softcap":
        return 1.0, value
    if value is None:  # the model's forward would fail on None: treat as no scaling like its defaults
        return 1.0, None
    return (1.0 / value, None) if operation == "divide" else (value, None)


def output_head(model: Any) -> OutputHead:
    """The output head of ``model`` (a transformers causal LM, possibly inside PEFT / DDP wrappers).

    Raises :class:`UnsupportedHeadError` when the model type's logits post-processing is unknown or
    the head is not a plain linear layer (e.g. a LoRA-adapted ``lm_head``).
    """
    inner = unwrap(model)
    config = getattr(inner, "config", None)
    model_type = getattr(config, "model_type", None) or type(inner).__name__
    scale, softcap = head_postprocessing(config) if config is not None else head_postprocessing(inner)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    lm_head = getattr(inner, "lm_head", head)
    if not isinstance(head, torch.nn.Linear) or lm_head is not head:
        raise UnsupportedHeadError(
            f"model type {model_type!r}: the output head is a {type(lm_head).__name__}, not a plain linear layer "
            "(an adapter on lm_head?); the chunked KD path needs the head's weight as it is"
        )
    assert head is not None
    return OutputHead(weight=head.weight, bias=head.bias, scale=scale, softcap=softcap)
