"""Batched text generation with the KV cache: left padding, per-row stop at EOS, finished rows leave the batch and
waiting prompts take their places (continuous batching)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, cast


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

    Prompts wait in a queue, longest first. Rows are prefilled with left padding and decoded one token
    per forward with the KV cache; a row that writes a stop token (kept in its answer) or reaches
    ``max_new_tokens`` leaves the batch, its cache rows dropped. Once a quarter of the batch is free,
    waiting prompts are prefilled in one forward of their own and their cache rows joined to the batch's
    (the shorter side padded on the left, masked), so the batch stays full and the number of forwards
    tracks the total tokens / ``batch_size`` rather than the longest answer of each batch. A model whose
    cache is not plain per-layer key/value tensors (sliding-window or hybrid layers) takes new prompts
    only when its batch has emptied. ``progress(done, total)`` counts finished rows. The model's training
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
    waiting = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # pop() takes the longest first
    admit_at = max(1, batch_size // 4)
    drawn: list[tuple[torch.Tensor, torch.Tensor]] = []  # (prompt index of each row, token) per draw
    batch: _Batch | None = None
    since_check = steps_left = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            while True:
                if batch is not None and (since_check >= check_every or steps_left <= 0):
                    since_check = 0
                    batch.drop_finished()  # finished rows leave the batch
                    if progress is not None and batch.finished:
                        progress(len(prompts) - len(waiting) - batch.size, len(prompts))
                    if batch.size == 0:
                        batch = None
                free = batch_size - (batch.size if batch is not None else 0)
                if waiting and (batch is None or (free >= admit_at and batch.can_join)):
                    new = [waiting.pop() for _ in range(min(free, len(waiting)))]
                    joined = _Batch.prefill(model, [prompts[i] for i in new], new, pad_id, max_new_tokens, stop)
                    drawn.append(joined.draw(temperature, generator, top_p, vocab_size))
                    batch = joined if batch is None else batch.join(joined)
                    steps_left = max(steps_left, max_new_tokens - 1)
                    since_check += 1
                    continue
                if batch is None:
                    break
                batch.forward(model)
                drawn.append(batch.draw(temperature, generator, top_p, vocab_size))
                steps_left -= 1
                since_check += 1
    finally:
        if was_training:
            model.train()
    stop_set = set(stop.tolist())
    open_rows = set(range(len(prompts)))
    for rows, tokens in drawn:
        for row, value in zip(rows.tolist(), tokens.tolist()):
            if row in open_rows:
                answers[row].append(value)
                if value in stop_set or len(answers[row]) >= max_new_tokens:
                    open_rows.discard(row)
    return answers


class _Batch:
    """The rows being decoded: their prompt indices, KV cache, attention mask, next positions, last logits,
    tokens left and whether each is still going (no stop token written, budget left)."""

    def __init__(self, cache, cache_key, rows, mask, next_position, logits, budget, stop) -> None:
        import torch

        self.cache, self.cache_key, self.rows, self.mask = cache, cache_key, rows, mask
        self.next_position, self.logits, self.budget, self.stop = next_position, logits, budget, stop
        self.going = torch.ones(rows.shape[0], dtype=torch.bool, device=rows.device)
        self.token = rows.new_zeros(rows.shape[0])
        self.finished = False

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    @property
    def can_join(self) -> bool:
        """Whether other rows' cache can be joined to this one: every layer plain key/value tensors."""
        from transformers.cache_utils import DynamicLayer

        layers = getattr(self.cache, "layers", None) or []
        return bool(layers) and all(type(layer) in (DynamicLayer, _growing_layer_class()) and layer.is_initialized for layer in layers)

    @classmethod
    def prefill(cls, model, contexts, rows, pad_id: int, max_new_tokens: int, stop) -> "_Batch":
        import torch
        from transformers import DynamicCache

        device = stop.device
        width = max(len(c) for c in contexts)
        ids = torch.tensor([[pad_id] * (width - len(c)) + list(c) for c in contexts], dtype=torch.long, device=device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], dtype=torch.long, device=device)
        positions = (mask.cumsum(-1) - 1).clamp_min_(0)
        key = _cache_argument(model)
        cache = _growing_cache(DynamicCache(config=model.config))
        keep_last = {"logits_to_keep": 1} if _takes(model, "logits_to_keep") else {}  # remote-code models may not
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **keep_last, **{key: cache})
        budget = torch.full((len(contexts),), max_new_tokens, dtype=torch.long, device=device)
        rows_t = torch.tensor(rows, dtype=torch.long, device=device)
        return cls(cache, key, rows_t, mask, positions[:, -1:] + 1, out.logits[:, -1], budget, stop)

    def draw(self, temperature: float, generator, top_p: float, vocab_size: int | None):
        """Draw each row's next token from the last logits; returns (rows, tokens) to record."""
        import torch

        self.token = _draw(self.logits[:, :vocab_size], temperature, generator, top_p)
        self.budget = self.budget - 1
        self.going &= self.budget > 0
        if self.stop.numel():
            self.going &= ~torch.isin(self.token, self.stop)
        return self.rows, self.token

    def forward(self, model) -> None:
        """Feed the drawn tokens: one position more for every row."""
        import torch

        self.mask = torch.cat([self.mask, self.mask.new_ones(self.size, 1)], dim=1)
        out = model(
            input_ids=self.token[:, None],
            attention_mask=self.mask,
            position_ids=self.next_position,
            use_cache=True,
            **{self.cache_key: self.cache},
        )
        self.next_position = self.next_position + 1
        self.logits = out.logits[:, -1]

    def drop_finished(self) -> None:
        """Keep only the rows still going (a host sync); ``finished`` tells whether any left."""
        self.finished = not bool(self.going.all())
        if not self.finished:
            return
        keep = self.going.nonzero().squeeze(1)
        self._select(keep)
        if keep.numel():
            self.cache.reorder_cache(cast(Any, keep))

    def _select(self, keep) -> None:
        for name in ("rows", "mask", "next_position", "logits", "budget", "going", "token"):
            setattr(self, name, getattr(self, name)[keep])

    def join(self, other: "_Batch") -> "_Batch":
        """This batch with ``other``'s rows added; the shorter cache and mask are padded on the left."""
        import torch
        import torch.nn.functional as F

        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            for name in ("keys", "values"):
                a, b = getattr(mine, name), getattr(theirs, name)
                a = F.pad(a, (0, 0, width - a.shape[-2], 0))
                b = F.pad(b, (0, 0, width - b.shape[-2], 0))
                setattr(mine, name, torch.cat([a, b], dim=0))
        self.mask = torch.cat([F.pad(self.mask, (width - self.mask.shape[1], 0)), F.pad(other.mask, (width - other.mask.shape[1], 0))])
        for name in ("rows", "next_position", "logits", "budget", "going", "token"):
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))
        return self


def _growing_cache(cache):
    """``cache`` with its plain key/value layers replaced by layers that write each new position into room kept
    ahead (:func:`_growing_layer_class`) instead of concatenating the whole cache again at every token.

    A plain layer's ``torch.cat`` copies every cached position of every row at every step: measured at batch 16
    on the demo teacher, 43% of a decoding forward. Layers of another kind (sliding windows, hybrids) stay as
    they are."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if layers and all(type(layer) is DynamicLayer and not layer.is_initialized for layer in layers):
        cache.layers = [_growing_layer_class()() for _ in layers]
    return cache


_GROWING_LAYER: type | None = None


def _growing_layer_class() -> type:
    """A ``DynamicLayer`` whose keys and values are views into buffers with room for ``HEADROOM`` more positions.

    A new position is written into the room (one copy of the new states only); a full buffer is replaced by one
    with room again (one copy of the cache every ``HEADROOM`` steps). Whatever replaces ``keys``/``values`` from
    outside (rows dropped or joined, a crop) is copied into a new buffer at the next update."""
    global _GROWING_LAYER
    if _GROWING_LAYER is not None:
        return _GROWING_LAYER
    import torch
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        HEADROOM = 64

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._key_buffer: Any = None
            self._value_buffer: Any = None

        def update(self, key_states, value_states, *args: Any, **kwargs: Any):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            keys, values = cast(Any, self.keys), cast(Any, self.values)
            length, new = int(keys.shape[-2]) if keys.dim() == 4 else 0, int(key_states.shape[-2])
            kb = self._key_buffer
            ours = kb is not None and keys.dim() == 4 and keys.data_ptr() == kb.data_ptr() and keys.shape[0] == kb.shape[0]
            if not ours or length + new > kb.shape[-2]:
                shape = list(key_states.shape)
                shape[-2] = length + new + self.HEADROOM
                kb = key_states.new_empty(shape)
                vshape = list(value_states.shape)
                vshape[-2] = shape[-2]
                vb = value_states.new_empty(vshape)
                if length:
                    kb[..., :length, :] = keys
                    vb[..., :length, :] = values
                self._key_buffer, self._value_buffer = kb, vb
            kb[..., length : length + new, :] = key_states
            self._value_buffer[..., length : length + new, :] = value_states
            self.keys = kb[..., : length + new, :]
            self.values = self._value_buffer[..., : length + new, :]
            return self.keys, self.values

        def reset(self) -> None:
            self._key_buffer = self._value_buffer = None
            super().reset()

    del torch
    _GROWING_LAYER = GrowingLayer
    return GrowingLayer


def _cache_argument(model) -> str:
    """The name ``forward`` takes the KV cache under: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    return "cache" if _takes(model, "cache") else "past_key_values"


def _takes(model, argument: str) -> bool:
    """Whether the model's ``forward`` names ``argument`` (a PEFT model passes its base model's through)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return argument in inspect.signature(base.forward).parameters


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
