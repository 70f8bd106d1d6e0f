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


def sample_token_ids(
    model,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    stop_ids: Sequence[int],
    pad_id: int,
    generator=None,
    vocab_size: int | None = None,
) -> list[list[int]]:
    """Continue token-id ``prompts`` with the KV cache; returns each row's new tokens (its stop token included).

    Sampling at ``temperature`` from the model's whole distribution (greedy when 0; only the first
    ``vocab_size`` tokens when given, e.g. a vocabulary shared with a teacher, not the padded rows), drawn from
    ``generator`` (a ``torch.Generator`` on the model's device) so the same generator state gives the same
    tokens. Prompts are padded on the left and run as one batch; a row that writes a stop token leaves the
    batch (its rows of the KV cache are dropped), so the remaining steps cost only the unfinished rows.
    The model's training mode is restored afterwards; no gradient is recorded.
    """
    import torch

    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("sample_token_ids: every prompt needs at least one token")
    from transformers import DynamicCache

    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long, device=device)
    positions = (mask.cumsum(-1) - 1).clamp_min_(0)
    stop = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    alive = torch.arange(len(prompts), device=device)  # which prompt each batch row belongs to
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []  # (rows, tokens) per step
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            cache = {_cache_argument(model): DynamicCache(config=model.config)}
            out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                        **cache)
            next_position = positions[:, -1:] + 1
            for step in range(max_new_tokens):
                token = _draw(out.logits[:, -1, :vocab_size], temperature, generator)
                steps.append((alive, token))
                if step == max_new_tokens - 1:
                    break
                going = ~torch.isin(token, stop) if stop.numel() else None
                if going is not None and not bool(going.all()):
                    keep = going.nonzero().squeeze(1)
                    if keep.numel() == 0:
                        break
                    next(iter(cache.values())).reorder_cache(keep)  # finished rows leave the batch
                    alive, token, mask, next_position = alive[keep], token[keep], mask[keep], next_position[keep]
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
                out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_position, use_cache=True, **cache)
                next_position = next_position + 1
    finally:
        if was_training:
            model.train()
    completions: list[list[int]] = [[] for _ in prompts]
    for rows, tokens in steps:
        for row, token in zip(rows.tolist(), tokens.tolist()):
            completions[row].append(token)
    return completions


def _cache_argument(model) -> str:
    """The name ``forward`` takes the KV cache under: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model passes it through
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _draw(logits, temperature: float, generator):
    """One token per row from ``logits [rows, vocab]``: the argmax at temperature 0, else a sample.

    Sampled by the inverse of the cumulative distribution (one uniform number per row, float64 sums):
    the same distribution as ``torch.multinomial`` at a fraction of its cost for large vocabularies.
    """
    import torch

    if temperature <= 0:
        return logits.argmax(-1)
    cumulative = torch.softmax(logits.double() / temperature, dim=-1).cumsum_(-1)
    u = torch.rand((logits.shape[0], 1), generator=generator, device=logits.device, dtype=torch.float64)
    u.mul_(cumulative[:, -1:])
    return torch.searchsorted(cumulative, u, right=True).squeeze(1).clamp_(max=logits.shape[-1] - 1)
