"""Batched text generation with the KV cache: left padding, per-row stop at EOS, finished rows leave the batch and
waiting prompts take their places (continuous batching)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, cast


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

    ids: list[int] = []
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

    Prompts are tokenized without special tokens added twice and completed by :func:`complete_token_ids`:
    up to ``batch_size`` rows at a time with the KV cache, each row stopping at EOS (or the chat template's
    end-of-turn token), finished rows leaving the batch and waiting prompts taking their places.
    Greedy at temperature 0, else sampled at ``temperature`` inside the ``top_p`` nucleus.
    ``progress(done, total)`` is called as prompts finish.
    """
    import torch

    settings = settings or GenerationSettings()
    if seed is not None:
        torch.manual_seed(seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=_adds_bos(tokenizer, [p]))["input_ids"] for p in prompts]
    for index, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"generate: prompt {index} is empty after tokenization; give it some text")
    repeats = settings.num_samples
    rows = [ids for ids in encoded for _ in range(repeats)]  # each prompt's samples side by side

    def prompts_done(rows_done: int, total_rows: int) -> None:
        if progress is not None:
            progress(rows_done // repeats, len(prompts))

    tokens = complete_token_ids(
        model,
        rows,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        stop_ids=_stop_ids(tokenizer, model),
        pad_id=pad_id,
        batch_size=settings.batch_size,
        progress=prompts_done if progress is not None else None,
    )
    texts = tokenizer.batch_decode(tokens, skip_special_tokens=True)
    return [texts[i * repeats : (i + 1) * repeats] for i in range(len(prompts))]


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
    if any(len(p) == 0 for p in prompts):
        raise ValueError("sample_token_ids: every prompt needs at least one token")
    return complete_token_ids(
        model,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        stop_ids=stop_ids,
        pad_id=pad_id,
        batch_size=max(len(prompts), 1),
        generator=generator,
        vocab_size=vocab_size,
    )


def complete_token_ids(
    model,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    stop_ids: Sequence[int],
    pad_id: int,
    batch_size: int,
    top_p: float = 1.0,
    generator=None,
    vocab_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[int]]:
    """Continue every token-id prompt, at most ``batch_size`` rows at a time (continuous batching).

    Prompts wait in a queue, longest first. A batch of rows is prefilled with left padding and decoded
    one token per forward with the KV cache; a row that writes a stop token (kept in its answer) or reaches
    ``max_new_tokens`` leaves the batch, its cache rows dropped. When the batch has shrunk to half and
    prompts are waiting, the live rows and the waiting prompts are prefilled together into a fresh cache
    (the live rows' prompt and tokens so far recomputed in that one forward), so the batch stays full and
    the number of forwards tracks the total tokens / ``batch_size`` rather than the longest answer per
    batch. Only public model calls are used (``forward`` with a new ``DynamicCache``), so any causal LM,
    PEFT-wrapped or quantized, runs. ``progress(done, total)`` counts finished rows. The model's training
    mode is restored afterwards; no gradient is recorded.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"complete_token_ids: batch_size must be at least 1, got {batch_size}")
    answers: list[list[int]] = [[] for _ in prompts]
    if not prompts or max_new_tokens <= 0:
        return answers
    for index, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise ValueError(f"complete_token_ids: prompt {index} has no tokens")
    device = next(model.parameters()).device
    stop = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    # Finished rows are found by looking at the drawn tokens: free on a CPU, a host sync on an
    # accelerator, where it is done every few steps (a finished row's extra tokens are cut off afterwards).
    check_every = 1 if device.type == "cpu" else 4
    waiting = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    waiting.reverse()  # pop() from the end takes the longest first
    live: list[int] = []
    finished = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            while live or waiting:
                while waiting and len(live) < batch_size:
                    live.append(waiting.pop())
                live = _decode_batch(
                    model,
                    prompts,
                    answers,
                    live,
                    bool(waiting),
                    batch_size,
                    max_new_tokens,
                    temperature,
                    top_p,
                    stop,
                    pad_id,
                    generator,
                    vocab_size,
                    check_every,
                )
                done_now = len(prompts) - len(waiting) - len(live)
                if progress is not None and done_now != finished:
                    progress(done_now, len(prompts))
                finished = done_now
    finally:
        if was_training:
            model.train()
    return answers


def _decode_batch(
    model, prompts, answers, live, refill, batch_size, max_new_tokens, temperature, top_p, stop, pad_id, generator, vocab_size, check_every
) -> list[int]:
    """Prefill ``live`` rows (prompt + answer so far) into a fresh cache and decode until every row has
    finished or, when ``refill``, the batch has shrunk to half; appends to ``answers`` and returns the
    rows still unfinished."""
    import torch
    from transformers import DynamicCache

    device = stop.device
    contexts = [list(prompts[i]) + answers[i] for i in live]
    width = max(len(c) for c in contexts)
    input_ids = torch.tensor([[pad_id] * (width - len(c)) + c for c in contexts], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], dtype=torch.long, device=device)
    positions = (mask.cumsum(-1) - 1).clamp_min_(0)
    budget = torch.tensor([max_new_tokens - len(answers[i]) for i in live], dtype=torch.long, device=device)
    rows = torch.arange(len(live), device=device)  # which entry of ``live`` each batch row is
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []  # (rows, tokens) per step
    cache = {_cache_argument(model): DynamicCache(config=model.config)}
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **cache)
    next_position = positions[:, -1:] + 1
    going = torch.ones(len(live), dtype=torch.bool, device=device)
    step = 0
    while True:
        token = _draw(out.logits[:, -1, :vocab_size], temperature, generator, top_p)
        steps.append((rows, token))
        step += 1
        budget = budget - 1
        going &= budget > 0
        if stop.numel():
            going &= ~torch.isin(token, stop)
        if step % check_every == 0 or step >= max_new_tokens:
            if not bool(going.all()):
                keep = going.nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
                rows, token, mask, next_position, budget = rows[keep], token[keep], mask[keep], next_position[keep], budget[keep]
                going = going[keep]
                if refill and keep.numel() <= batch_size // 2:
                    break
                next(iter(cache.values())).reorder_cache(cast(torch.LongTensor, keep))  # finished rows leave the batch
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_position, use_cache=True, **cache)
        next_position = next_position + 1
    stop_set = set(stop.tolist())
    open_rows: set[int] = set(range(len(live)))
    for step_rows, tokens in steps:
        for row, value in zip(step_rows.tolist(), tokens.tolist()):
            if row in open_rows:
                answer = answers[live[row]]
                answer.append(value)
                if value in stop_set or len(answer) >= max_new_tokens:
                    open_rows.discard(row)
    return [live[row] for row in sorted(open_rows)]


def _cache_argument(model) -> str:
    """The name ``forward`` takes the KV cache under: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model passes it through
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _draw(logits, temperature: float, generator, top_p: float = 1.0):
    """One token per row from ``logits [rows, vocab]``: the argmax at temperature 0, else a sample.

    Sampled by the inverse of the cumulative distribution (one uniform number per row, float64 sums):
    the same distribution as ``torch.multinomial`` at a fraction of its cost for large vocabularies.
    With ``top_p < 1`` only the nucleus is drawn from: the most likely tokens whose probabilities add up to
    ``top_p`` (the most likely token always stays), as transformers' top-p filter keeps them.
    """
    import torch

    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_p < 1.0:
        ascending, order = probs.sort(dim=-1)
        outside = ascending.cumsum(-1) <= 1 - top_p
        outside[:, -1] = False
        probs = probs.scatter(-1, order, ascending.masked_fill(outside, 0.0))
    cumulative = probs.cumsum_(-1)
    u = torch.rand((logits.shape[0], 1), generator=generator, device=logits.device, dtype=torch.float64)
    u.mul_(cumulative[:, -1:])
    return torch.searchsorted(cumulative, u, right=True).squeeze(1).clamp_(max=logits.shape[-1] - 1)
