"""Batched text generation with the KV cache (left padding, per-row stop at EOS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class GenerationSettings:
    """How to sample: greedy when ``temperature`` is 0."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    num_samples: int = 1
    batch_size: int = 16


def _stop_ids(tokenizer, model) -> list[int]:
    """EOS ids of the model and the tokenizer, and the chat template's end-of-turn token (which training
    puts at the end of a chat turn, e.g. ``<|im_end|>``) when it is one token."""
    from distill_gui.core.data import turn_end_text

    ids = []
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if value is None:
            continue
        ids.extend(value if isinstance(value, (list, tuple)) else [value])
    end = turn_end_text(tokenizer) if getattr(tokenizer, "chat_template", None) else None
    end_ids = tokenizer(end, add_special_tokens=False)["input_ids"] if end else []
    if len(end_ids) == 1:
        ids.extend(end_ids)
    return sorted(set(ids))


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    settings: GenerationSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
    seed: int | None = None,
) -> list[list[str]]:
    """Complete each prompt (already rendered as text); returns ``num_samples`` answers per prompt.

    Prompts are tokenized without special tokens added twice, padded on the left, run in batches of
    ``batch_size`` with the KV cache; each row stops at EOS. ``progress(done, total)`` is called per batch.
    """
    import torch

    settings = settings or GenerationSettings()
    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop = _stop_ids(tokenizer, model)
    sampling = settings.temperature > 0
    kwargs = dict(
        max_new_tokens=settings.max_new_tokens,
        do_sample=sampling,
        num_return_sequences=settings.num_samples,
        pad_token_id=pad_id,
        eos_token_id=stop or None,
        use_cache=True,
    )
    if sampling:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    was_training = model.training
    model.eval()
    # Batch prompts of similar length together: less padding, and rows that finish together
    # (longer questions tend to need longer answers). Results come back in the caller's order.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    ordered = [prompts[i] for i in order]
    results: list[list[str]] = []
    try:
        for start in range(0, len(ordered), settings.batch_size):
            batch = ordered[start : start + settings.batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=_adds_bos(tokenizer, batch))
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                out = model.generate(**enc, **kwargs)
            new_tokens = out[:, enc["input_ids"].shape[1] :]
            texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for i in range(len(batch)):
                results.append(texts[i * settings.num_samples : (i + 1) * settings.num_samples])
            if progress is not None:
                progress(min(start + settings.batch_size, len(prompts)), len(prompts))
    finally:
        tokenizer.padding_side = old_side
        if was_training:
            model.train()
    unsorted: list[list[str]] = [[] for _ in prompts]
    for position, index in enumerate(order):
        unsorted[index] = results[position]
    return unsorted


def _adds_bos(tokenizer, batch: Sequence[str]) -> bool:
    """Add special tokens unless the rendered prompts already start with the BOS token (chat templates)."""
    bos = tokenizer.bos_token
    return not (bos and batch and all(p.startswith(bos) for p in batch))
