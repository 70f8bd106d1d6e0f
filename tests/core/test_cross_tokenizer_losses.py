"""Cross-tokenizer KD losses (distill_gui.core.cross_tokenizer_losses) against plain reference implementations."""

from __future__ import annotations

import pytest
import tiny_models
import torch

from distill_gui.core.cross_tokenizer_losses import (
    GoldColumns,
    GroupIndex,
    cross_kd_loss_from_hidden,
    cross_kd_loss_reference,
    generalized_kl,
    sorted_l1,
    teacher_to_student_map,
    teacher_top_k_for_groups,
)
from distill_gui.core.losses import kd_loss_from_logits
from distill_gui.core.token_alignment import SharedTokens, align_row, identity_row, shared_tokens


def test_sorted_l1_and_generalized_kl_by_hand():
    p = torch.tensor([[0.7, 0.2, 0.1]])
    q = torch.tensor([[0.1, 0.6, 0.2, 0.1]])
    # sorted: [0.7, 0.2, 0.1, 0] vs [0.6, 0.2, 0.1, 0.1]
    assert sorted_l1(p, q).item() == pytest.approx(0.1 + 0 + 0 + 0.1)
    assert sorted_l1(q, q).item() == 0.0
    t = torch.tensor([[0.5, 0.25, 0.0]])
    s = torch.tensor([[0.25, 0.25, 0.25]])
    expected = 0.5 * torch.log(torch.tensor(2.0)).item() - 0.75 + 0.75
    assert generalized_kl(t.log(), s.log()).item() == pytest.approx(expected)
    assert generalized_kl(s.log(), s.log()).item() == pytest.approx(0.0, abs=1e-7)


@pytest.fixture(scope="module")
def tokenizers():
    return tiny_models.build_tokenizer(300), tiny_models.build_tokenizer(420, digits=False)


def _setup_pair(a, b):
    texts = [("Question: What is 12 plus 7?", " Answer: 12 + 7 = 19."), ("Translate to French: cat", " -> chat, dog -> chien 🙂")]
    rows = []
    for prompt, completion in texts:
        p = a(prompt, add_special_tokens=False)["input_ids"]
        c = a(completion, add_special_tokens=False)["input_ids"]
        rows.append((p + c, [-100] * len(p) + c))
    aligned = [align_row(a, b, ids, labels) for ids, labels in rows]
    return a, b, rows, aligned


@pytest.mark.parametrize("alignment", ["uld", "gold"])
@pytest.mark.parametrize("temperature,alpha", [(1.0, 0.5), (2.0, 1.0), (0.7, 0.0)])
def test_chunked_loss_matches_the_reference_values_and_gradients(tokenizers, alignment, temperature, alpha):
    a, b, rows, aligned = _setup_pair(*tokenizers)
    torch.manual_seed(0)
    hs, ht, vs, vt = 8, 6, len(a), len(b)
    s_head = torch.randn(vs, hs, dtype=torch.float64, requires_grad=True)
    t_head = torch.randn(vt, ht, dtype=torch.float64)
    length = max(len(ids) for ids, _ in rows)
    t_len = max(len(r.teacher_ids) for r in aligned)
    s_hidden = torch.randn(len(rows), length, hs, dtype=torch.float64, requires_grad=True)
    t_hidden = torch.randn(len(rows), t_len, ht, dtype=torch.float64)
    shared = shared_tokens(b, a, vt, vs)

    # reference on full logits
    ref = cross_kd_loss_reference(
        [s_hidden[i, : len(ids)] @ s_head.T for i, (ids, _) in enumerate(rows)],
        [t_hidden[i, : len(r.teacher_ids)] @ t_head.T for i, r in enumerate(aligned)],
        [ids for ids, _ in rows],
        [r.teacher_ids for r in aligned],
        [r.groups for r in aligned],
        [lab for _, lab in rows],
        alignment=alignment,
        shared=shared,
        temperature=temperature,
        alpha=alpha,
    )
    ref_grads = torch.autograd.grad(ref.total, (s_hidden, s_head))

    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        labels[i, : len(ids) - 1] = torch.tensor(lab[1:])
    s_index = GroupIndex.build([(ids, [(g.s_start, g.s_end) for g in r.groups]) for (ids, _), r in zip(rows, aligned)], length)
    t_index = GroupIndex.build([(r.teacher_ids, [(g.t_start, g.t_end) for g in r.groups]) for r in aligned], t_len)
    got = cross_kd_loss_from_hidden(
        s_hidden.reshape(-1, hs),
        s_head,
        t_hidden.reshape(-1, ht),
        t_head,
        labels.reshape(-1),
        s_index,
        t_index,
        alignment=alignment,
        columns=GoldColumns.build(shared, vt, vs),
        temperature=temperature,
        alpha=alpha,
        chunk_size=3,
    )
    got_grads = torch.autograd.grad(got.total, (s_hidden, s_head))
    assert got.kd.item() == pytest.approx(ref.kd.item(), rel=1e-9, abs=1e-12)
    assert got.ce.item() == pytest.approx(ref.ce.item(), rel=1e-9)
    assert got.total.item() == pytest.approx(ref.total.item(), rel=1e-9)
    assert ref.kd.item() > 0
    for g, r in zip(got_grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-7, atol=1e-10)


def test_gold_on_a_shared_tokenizer_equals_forward_kl_kd():
    torch.manual_seed(1)
    n_rows, length, vocab, hs, ht = 2, 7, 11, 5, 4
    ids = torch.randint(0, vocab, (n_rows, length))
    labels = ids.clone()
    labels[:, :3] = -100
    s_hidden = torch.randn(n_rows * length, hs, dtype=torch.float64, requires_grad=True)
    s_head = torch.randn(vocab, hs, dtype=torch.float64)
    t_hidden = torch.randn(n_rows * length, ht, dtype=torch.float64)
    t_head = torch.randn(vocab, ht, dtype=torch.float64)
    rows = [identity_row(ids[i].tolist(), labels[i].tolist()) for i in range(n_rows)]
    s_index = GroupIndex.build([(ids[i].tolist(), [(g.s_start, g.s_end) for g in r.groups]) for i, r in enumerate(rows)], length)
    t_index = GroupIndex.build([(r.teacher_ids, [(g.t_start, g.t_end) for g in r.groups]) for r in rows], length)
    shifted = torch.full((n_rows, length), -100)
    shifted[:, :-1] = labels[:, 1:]
    shared = SharedTokens(tuple(range(vocab)), tuple(range(vocab)))
    gold = cross_kd_loss_from_hidden(
        s_hidden,
        s_head,
        t_hidden,
        t_head,
        shifted.reshape(-1),
        s_index,
        t_index,
        alignment="gold",
        columns=GoldColumns.build(shared, vocab, vocab),
        temperature=1.5,
        alpha=0.6,
        chunk_size=4,
    )
    kd = kd_loss_from_logits(s_hidden @ s_head.T, t_hidden @ t_head.T, shifted.reshape(-1), loss="forward_kl", temperature=1.5, alpha=0.6)
    assert gold.kd.item() == pytest.approx(kd.kd.item(), rel=1e-10)
    assert gold.total.item() == pytest.approx(kd.total.item(), rel=1e-10)
    torch.testing.assert_close(torch.autograd.grad(gold.total, s_hidden)[0], torch.autograd.grad(kd.total, s_hidden)[0])


def test_equal_models_give_zero_uld():
    torch.manual_seed(2)
    ids = torch.randint(0, 9, (1, 6))
    rows = [identity_row(ids[0].tolist(), ids[0].tolist())]
    index = GroupIndex.build([(ids[0].tolist(), [(g.s_start, g.s_end) for g in rows[0].groups])], 6)
    hidden, head = torch.randn(6, 4), torch.randn(9, 4)
    labels = torch.full((6,), -100)
    labels[:-1] = ids[0, 1:]
    out = cross_kd_loss_from_hidden(hidden, head, hidden, head, labels, index, index, alignment="uld", alpha=1.0)
    assert out.kd.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("alignment", ["uld", "gold"])
def test_top_k_from_a_cache_equals_live_top_k(tokenizers, alignment):
    a, b, rows, aligned = _setup_pair(*tokenizers)
    torch.manual_seed(3)
    hs, ht, vs, vt = 8, 6, len(a), len(b)
    s_head = torch.randn(vs, hs, dtype=torch.float64)
    t_head = torch.randn(vt, ht, dtype=torch.float64) * 3
    length = max(len(ids) for ids, _ in rows)
    t_len = max(len(r.teacher_ids) for r in aligned)
    s_hidden = torch.randn(len(rows) * length, hs, dtype=torch.float64, requires_grad=True)
    t_hidden = torch.randn(len(rows) * t_len, ht, dtype=torch.float64)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        labels[i, : len(ids) - 1] = torch.tensor(lab[1:])
    s_index = GroupIndex.build([(ids, [(g.s_start, g.s_end) for g in r.groups]) for (ids, _), r in zip(rows, aligned)], length)
    t_index = GroupIndex.build([(r.teacher_ids, [(g.t_start, g.t_end) for g in r.groups]) for r in aligned], t_len)
    t2s = teacher_to_student_map(shared_tokens(b, a, vt, vs), vt)
    options = dict(alignment=alignment, temperature=1.3, alpha=0.7, chunk_size=4, teacher_to_student=t2s)
    live = cross_kd_loss_from_hidden(s_hidden, s_head, t_hidden, t_head, labels.reshape(-1), s_index, t_index, top_k=6, **options)
    live_grad = torch.autograd.grad(live.total, s_hidden)[0]
    cache = teacher_top_k_for_groups(t_hidden, t_head, t_index, top_k=6, temperature=1.3, chunk_size=5)
    assert cache[0].shape == (s_index.base.numel(), 6) and bool((cache[1][:, :6].exp().sum(1) + cache[1][:, 6].exp() <= 1 + 1e-9).all())
    cached = cross_kd_loss_from_hidden(s_hidden, s_head, None, None, labels.reshape(-1), s_index, t_index, cached=cache, **options)
    assert cached.total.item() == pytest.approx(live.total.item(), rel=1e-6)
    assert live.kd.item() > 0
    torch.testing.assert_close(torch.autograd.grad(cached.total, s_hidden)[0], live_grad, rtol=1e-5, atol=1e-7)


def test_gold_top_k_on_a_shared_tokenizer_equals_top_k_kd():
    torch.manual_seed(4)
    length, vocab, hs, ht = 9, 13, 5, 4
    ids = torch.randint(0, vocab, (1, length))
    labels = ids.clone()
    labels[:, :2] = -100
    s_hidden = torch.randn(length, hs, dtype=torch.float64, requires_grad=True)
    s_head, t_hidden, t_head = (
        torch.randn(vocab, hs, dtype=torch.float64),
        torch.randn(length, ht, dtype=torch.float64),
        torch.randn(vocab, ht, dtype=torch.float64),
    )
    row = identity_row(ids[0].tolist(), labels[0].tolist())
    index = GroupIndex.build([(ids[0].tolist(), [(g.s_start, g.s_end) for g in row.groups])], length)
    shifted = torch.full((length,), -100)
    shifted[:-1] = labels[0, 1:]
    shared = SharedTokens(tuple(range(vocab)), tuple(range(vocab)))
    gold = cross_kd_loss_from_hidden(
        s_hidden,
        s_head,
        t_hidden,
        t_head,
        shifted,
        index,
        index,
        alignment="gold",
        top_k=4,
        teacher_to_student=teacher_to_student_map(shared, vocab),
        temperature=2.0,
        alpha=0.5,
    )
    kd = kd_loss_from_logits(s_hidden @ s_head.T, t_hidden @ t_head.T, shifted, loss="forward_kl", top_k=4, temperature=2.0, alpha=0.5)
    assert gold.kd.item() == pytest.approx(kd.kd.item(), rel=1e-9)
    torch.testing.assert_close(torch.autograd.grad(gold.total, s_hidden)[0], torch.autograd.grad(kd.total, s_hidden)[0])
