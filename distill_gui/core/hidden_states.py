"""Reach inside a causal LM: unwrap PEFT/DDP wrappers, find the decoder, read the final hidden states.

The KD losses work from the final hidden states and the output head in chunks, so the full
[batch, sequence, vocabulary] logits are never built. These helpers find those parts in any wrapped
model without a second lookup anywhere else.
"""

from __future__ import annotations

from typing import Any

from distill_gui.core.errors import UserError


class ModelStructureError(UserError):
    """A model lacks a part distill-gui needs (named in the message)."""


def decoder_of(model: Any) -> tuple[Any, Any]:
    """(the unwrapped causal LM, the module producing its final hidden states), inside PEFT and DDP."""
    inner = model
    for _ in range(4):
        if hasattr(inner, "module") and not hasattr(inner, "get_decoder"):
            inner = inner.module  # DDP / accelerate wrappers
        elif hasattr(inner, "get_base_model"):
            inner = inner.get_base_model()  # PEFT
        else:
            break
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    if decoder is None or decoder is inner:
        decoder = getattr(inner, "model", None)
    if decoder is None:
        raise ModelStructureError(f"{type(inner).__name__}: cannot find the decoder module to read hidden states from")
    return inner, decoder


def final_hidden(model: Any, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
    """(the unwrapped model, its final hidden states) from a forward pass of the (possibly wrapped) model.

    The wrapped model is called so DDP and PEFT hooks run; only one logit row is computed.
    """
    captured: dict[str, Any] = {}

    def grab(_module: Any, _args: Any, output: Any) -> None:
        captured["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    inner, decoder = decoder_of(model)
    handle = decoder.register_forward_hook(grab)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1)
    finally:
        handle.remove()
    return inner, captured["hidden"]
