"""Output heads: the chunked KD path computes exactly the logits of each model family's ``forward``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from distill_gui.core import teacher_cache as tc
from distill_gui.core.heads import OutputHead, UnsupportedHeadError, head_postprocessing, output_head, unwrap
from distill_gui.core.losses import kd_loss_from_cache, kd_loss_from_hidden, kd_loss_from_logits, teacher_top_k

VOCAB = 61
SMALL = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
             max_position_embeddings=64, vocab_size=VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _config(family: str):
    import transformers as tf

    if family == "llama":
        return tf.LlamaConfig(**SMALL, tie_word_embeddings=False)
    if family == "gpt2":
        return tf.GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=64, vocab_size=VOCAB, bos_token_id=1, eos_token_id=2)
    if family == "qwen2_tied":
        return tf.Qwen2Config(**SMALL, tie_word_embeddings=True)
    if family == "gemma2":
        return tf.Gemma2Config(**SMALL, head_dim=8, final_logit_softcapping=30.0, tie_word_embeddings=False)
    if family == "granite":
        return tf.GraniteConfig(**SMALL, logits_scaling=8.0)
    if family == "cohere":
        return tf.CohereConfig(**SMALL, logit_scale=0.25, tie_word_embeddings=False)
    raise AssertionError(family)


FAMILIES = ["llama", "gpt2", "qwen2_tied", "gemma2", "granite", "cohere"]
POSTPROCESSED = {"gemma2", "granite", "cohere"}


def _model(family: str, seed: int = 0, hidden: int | None = None):
    """A tiny float64 model whose raw logits are tens of units large (realistic: soft caps and scales matter).

    Gemma-2 and Cohere are built untied: scaling a tied head as much would also scale the input
    embeddings and make the model predict its input token with certainty."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = _config(family)
    if hidden is not None and family != "gpt2":
        config.hidden_size, config.intermediate_size = hidden, hidden * 2
    model = AutoModelForCausalLM.from_config(config).double().eval()
    with torch.no_grad():
        weight = model.get_output_embeddings().weight
        weight.mul_((3.0 if config.tie_word_embeddings else 30.0) / weight.std())
    return model


def _ids(rows: int = 3, length: int = 9, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (rows, length), generator=g)


def _hidden(model, ids: torch.Tensor) -> torch.Tensor:
    return unwrap(model).get_decoder()(input_ids=ids).last_hidden_state


@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_logits_equal_the_model_logits(family):
    model = _model(family)
    ids = _ids()
    with torch.no_grad():
        want = model(input_ids=ids).logits
        hidden = _hidden(model, ids)
        head = output_head(model)
        got = head.logits(hidden)
        plain = hidden @ head.weight.T
    assert got.shape == want.shape == (3, 9, VOCAB)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    # The model's post-processing matters at these scales: a bare matmul is far off.
    assert (family in POSTPROCESSED) == (not torch.allclose(plain, want, rtol=1e-3, atol=1e-2))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("top_k", [0, 7])
def test_kd_loss_from_hidden_equals_the_loss_on_model_logits(family, top_k):
    """Values and every student parameter's gradient, through the chunked path vs through model(...).logits."""
    student, teacher = _model(family, seed=1), _model(family, seed=2, hidden=24)
    ids = _ids(seed=3)
    labels = ids[:, 1:].clone()
    labels[0, :3] = -100
    labels = labels.reshape(-1)
    options = dict(loss="jsd", beta=0.3, temperature=1.7, alpha=0.6, top_k=top_k)
    with torch.no_grad():
        t_logits = teacher(input_ids=ids).logits[:, :-1].reshape(-1, VOCAB)
        t_hidden = _hidden(teacher, ids)[:, :-1].reshape(-1, teacher.config.hidden_size if family != "gpt2" else 16)

    want = kd_loss_from_logits(student(input_ids=ids).logits[:, :-1].reshape(-1, VOCAB), t_logits, labels, **options)
    want.total.backward()
    want_grads = {n: p.grad.clone() for n, p in student.named_parameters()}
    student.zero_grad()

    s_hidden = _hidden(student, ids)[:, :-1]
    got = kd_loss_from_hidden(s_hidden.reshape(-1, s_hidden.shape[-1]), output_head(student), t_hidden, output_head(teacher),
                              labels, chunk_size=5, **options)
    got.total.backward()
    assert want.kd > 1e-4  # the two models disagree: the comparison means something
    torch.testing.assert_close(got.total, want.total, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(got.kd, want.kd, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(got.ce, want.ce, rtol=1e-9, atol=1e-10)
    for name, param in student.named_parameters():
        torch.testing.assert_close(param.grad, want_grads[name], rtol=1e-7, atol=1e-9, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("family", ["llama", "gemma2", "granite", "cohere"])
def test_teacher_cache_holds_the_teacher_logits_top_k(family):
    teacher, student = _model(family, seed=4), _model(family, seed=5)
    ids = _ids(rows=4, length=8, seed=6)
    rows = []
    for r in range(4):
        labels = ids[r].tolist()
        labels[: r + 1] = [-100] * (r + 1)
        rows.append({"input_ids": ids[r].tolist(), "labels": labels})
    decoder = unwrap(teacher).get_decoder()
    cache = tc.build_teacher_cache(decoder, output_head(teacher), rows, top_k=6, temperature=1.5, vocab_size=VOCAB,
                                   fingerprint="x", batch_size=3, encoding="exact")
    with torch.no_grad():
        logits = teacher(input_ids=ids).logits[:, :-1]
    labels = torch.tensor([row["labels"] for row in rows])[:, 1:]
    want_ids, want_lp = teacher_top_k(logits[labels != -100], 6, temperature=1.5)
    torch.testing.assert_close(cache.log_probs, want_lp, rtol=1e-5, atol=1e-5)
    assert torch.equal(cache.ids.long(), want_ids)

    # The student side of the cached loss equals the loss on the student's own logits.
    s_hidden = _hidden(student, ids)[:, :-1].reshape(-1, 16)
    flat = labels.reshape(-1)
    got = kd_loss_from_cache(s_hidden, output_head(student), cache.ids, cache.log_probs, flat, temperature=1.5)
    with torch.no_grad():
        s_logits = student(input_ids=ids).logits[:, :-1].reshape(-1, VOCAB)
    counted = flat != -100
    want = kd_loss_from_logits(s_logits, logits.reshape(-1, VOCAB), flat, temperature=1.5, top_k=6)
    torch.testing.assert_close(got.total, want.total, rtol=1e-5, atol=1e-5)
    assert int(counted.sum()) == cache.positions


def test_output_head_reads_the_config_through_peft():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_model("gemma2"), LoraConfig(r=2, target_modules=["q_proj"]))
    head = output_head(model)
    assert head.softcap == 30.0 and head.scale == 1.0
    assert head.weight is unwrap(model).lm_head.weight


def test_an_adapter_on_the_head_is_refused():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_model("llama"), LoraConfig(r=2, target_modules=["lm_head"]))
    with pytest.raises(UnsupportedHeadError, match="'llama'.*not a plain linear layer"):
        output_head(model)


def test_unknown_architecture_is_refused_by_name():
    with pytest.raises(UnsupportedHeadError, match="model type 'xlstm'"):
        head_postprocessing(SimpleNamespace(model_type="xlstm", output_logit_soft_cap=15.0))
    assert issubclass(UnsupportedHeadError, ValueError)


def test_postprocessing_from_config_alone():
    from transformers import AutoConfig

    assert head_postprocessing(AutoConfig.for_model("granite", logits_scaling=4.0)) == (0.25, None)
    assert head_postprocessing(AutoConfig.for_model("cohere", logit_scale=0.5)) == (0.5, None)
    assert head_postprocessing(AutoConfig.for_model("gemma2", final_logit_softcapping=30.0)) == (1.0, 30.0)
    assert head_postprocessing(AutoConfig.for_model("gemma2", final_logit_softcapping=None)) == (1.0, None)
    assert head_postprocessing(AutoConfig.for_model("qwen2")) == (1.0, None)


def test_bias_given_twice_is_refused():
    head = OutputHead(weight=torch.randn(5, 3), bias=torch.randn(5))
    with pytest.raises(ValueError, match="student_bias: given twice"):
        kd_loss_from_hidden(torch.randn(4, 3), head, torch.randn(4, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 3]),
                            student_bias=torch.randn(5))
