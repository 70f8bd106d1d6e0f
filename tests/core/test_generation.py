"""Text generation: continuous batching gives each prompt the answer it gets alone (greedy, against
transformers' ``generate``), waiting prompts join a shrunken batch, the answers come back in prompt order
with ``num_samples`` each, top-p sampling draws only from the nucleus, and progress reaches the total."""

from __future__ import annotations

import pytest
import tiny_models
import torch

from distill_gui.core.generation import GenerationSettings, _draw, complete_token_ids, generate

PROMPTS = ["Question: What is 3 plus 4? Answer:", "Hi", "The quick brown fox", "12 34 56", "a b c d e f g h", "Why?"]


@pytest.fixture(scope="module")
def peaked(tiny_tokenizer):
    model = tiny_models.build_llama(tiny_tokenizer, hidden=32, layers=1, seed=2).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(25.0)  # peaked like a trained model: greedy ties are unlikely
    return model


def reference(model, tokenizer, prompt_ids, max_new_tokens, stop):
    out = model.generate(
        torch.tensor([prompt_ids]),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop,
    )
    return out[0, len(prompt_ids) :].tolist()


def test_continuous_batching_gives_each_prompt_its_greedy_answer_alone(tiny_tokenizer, peaked):
    prompts = [tiny_tokenizer(p)["input_ids"] for p in PROMPTS]
    free = complete_token_ids(peaked, prompts, max_new_tokens=9, temperature=0.0, stop_ids=[], pad_id=0, batch_size=6)
    # stop tokens that end some rows early, so the batch shrinks and waiting prompts join it
    stop = sorted({free[1][1], free[3][0]})
    rows_per_call = []
    hook = peaked.model.register_forward_pre_hook(
        lambda module, args, kwargs: rows_per_call.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    try:
        ours = complete_token_ids(peaked, prompts, max_new_tokens=9, temperature=0.0, stop_ids=stop, pad_id=0, batch_size=2)
    finally:
        hook.remove()
    for prompt, answer in zip(prompts, ours):
        expected = reference(peaked, tiny_tokenizer, prompt, 9, stop)
        cut = next((i + 1 for i, t in enumerate(expected) if t in stop), len(expected))
        assert answer == expected[:cut]
    prefills = [shape for shape in rows_per_call if shape[1] > 1]
    assert len(prefills) >= 3, "waiting prompts never joined the batch"
    assert max(shape[0] for shape in rows_per_call) <= 2
    assert len(rows_per_call) < sum(len(a) for a in ours), "rows were not decoded side by side"


def test_generate_returns_num_samples_per_prompt_in_prompt_order_and_reports_progress(tiny_tokenizer, peaked):
    calls = []
    settings = GenerationSettings(max_new_tokens=6, num_samples=2, batch_size=3)
    answers = generate(peaked, tiny_tokenizer, PROMPTS, settings, progress=lambda done, total: calls.append((done, total)))
    alone = [generate(peaked, tiny_tokenizer, [p], GenerationSettings(max_new_tokens=6))[0][0] for p in PROMPTS]
    assert [len(a) for a in answers] == [2] * len(PROMPTS)
    assert [a[0] for a in answers] == alone and [a[1] for a in answers] == alone  # greedy: both samples agree
    assert calls[-1] == (len(PROMPTS), len(PROMPTS)) and all(b >= a for (a, _), (b, _) in zip(calls, calls[1:]))
    assert peaked.training is False


def test_top_p_draws_only_from_the_nucleus_in_its_proportions():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(20000, 1)
    drawn = _draw(logits, 1.0, torch.Generator().manual_seed(0), top_p=0.7)
    counts = torch.bincount(drawn, minlength=4).double() / drawn.numel()
    assert counts[2] == 0 and counts[3] == 0  # 0.5 + 0.3 reach 0.7: the rest is cut
    assert abs(float(counts[0]) - 0.5 / 0.8) < 0.02


def test_an_empty_prompt_is_refused_by_index(tiny_tokenizer, peaked):
    with pytest.raises(ValueError, match="prompt 1 has no tokens"):
        complete_token_ids(peaked, [[5, 6], []], max_new_tokens=2, temperature=0.0, stop_ids=[], pad_id=0, batch_size=2)


def test_the_growing_kv_cache_decodes_like_the_plain_one(tiny_tokenizer, peaked, monkeypatch):
    """Room kept ahead in the KV cache (no concatenation per token) gives the same tokens as transformers' own
    cache, greedy and sampled, with rows leaving and joining (the layers' buffers rebuilt) and a headroom small
    enough to be refilled several times per answer."""
    import distill_gui.core.generation as generation

    layer = generation._growing_layer_class()
    monkeypatch.setattr(layer, "HEADROOM", 3)
    prompts = [tiny_tokenizer(p)["input_ids"] for p in PROMPTS * 2]
    free = complete_token_ids(peaked, prompts[:2], max_new_tokens=3, temperature=0.0, stop_ids=[], pad_id=0, batch_size=2)
    stop = sorted({free[0][2], free[1][1]})

    def run(temperature: float) -> list[list[int]]:
        generator = torch.Generator().manual_seed(7)
        return complete_token_ids(peaked, prompts, max_new_tokens=20, temperature=temperature, stop_ids=stop, pad_id=0,
                                  batch_size=4, generator=generator)

    grown = {t: run(t) for t in (0.0, 1.0)}
    seen = []
    real = generation._Batch.forward

    def watched(self, model):
        seen.append({type(layer).__name__ for layer in self.cache.layers})
        return real(self, model)

    monkeypatch.setattr(generation._Batch, "forward", watched)
    assert run(0.0) == grown[0.0] and seen and all(names == {"GrowingLayer"} for names in seen)
    monkeypatch.setattr(generation, "_growing_cache", lambda cache: cache)  # transformers' concatenating layers
    for temperature, tokens in grown.items():
        assert run(temperature) == tokens, temperature
    lengths = [len(t) for tokens in grown.values() for t in tokens]
    assert min(lengths) < 20 and max(lengths) > 3 * layer.HEADROOM, "rows must leave early, and some outgrow the room"
