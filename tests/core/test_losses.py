"""KD losses: the chunked computation equals the plain one; divergences meet their definitions."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from distill_gui.core.losses import (
    LossParts,
    forward_kl,
    generalized_jsd,
    kd_loss_from_cache,
    kd_loss_from_hidden,
    kd_loss_from_logits,
    reverse_kl,
    teacher_top_k,
    topk_bucket_log_probs,
)

N, H_S, H_T, V = 11, 6, 5, 23
MASKED = [0, 1, 6]
TOL = dict(rtol=1e-5, atol=1e-5)


def _inputs(dtype=torch.float32, seed=0, v_student=V, v_teacher=V + 4):
    g = torch.Generator().manual_seed(seed)
    student_hidden = torch.randn(N, H_S, generator=g, dtype=dtype).requires_grad_()
    student_head = torch.randn(v_student, H_S, generator=g, dtype=dtype).requires_grad_()
    teacher_hidden = torch.randn(N, H_T, generator=g, dtype=dtype)
    teacher_head = torch.randn(v_teacher, H_T, generator=g, dtype=dtype)
    labels = torch.randint(0, min(v_student, v_teacher), (N,), generator=g)
    labels[MASKED] = -100
    return student_hidden, student_head, teacher_hidden, teacher_head, labels


def _plain(student_hidden, student_head, teacher_hidden, teacher_head, labels, **options) -> LossParts:
    return kd_loss_from_logits(student_hidden @ student_head.T, teacher_hidden @ teacher_head.T, labels, **options)


def _grads(parts: LossParts, *tensors):
    return torch.autograd.grad(parts.total, tensors)


# ---- Chunked equals plain ------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 4, 64])
@pytest.mark.parametrize("top_k", [0, 5])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("loss", ["forward_kl", "reverse_kl", "jsd"])
def test_chunked_matches_plain(loss, alpha, top_k, chunk_size):
    sh, sw, th, tw, labels = _inputs()
    options = dict(loss=loss, beta=0.3, temperature=1.7, alpha=alpha, top_k=top_k)
    plain = _plain(sh, sw, th, tw, labels, **options)
    chunked = kd_loss_from_hidden(sh, sw, th, tw, labels, chunk_size=chunk_size, **options)
    for name in ("total", "kd", "ce"):
        torch.testing.assert_close(getattr(chunked, name), getattr(plain, name).detach(), **TOL)
    for got, want in zip(_grads(chunked, sh, sw), _grads(plain, sh, sw)):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("chunk_size", [1, 4, 64])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("loss", ["forward_kl", "reverse_kl", "jsd"])
def test_cached_teacher_matches_live_top_k(loss, alpha, chunk_size):
    sh, sw, th, tw, labels = _inputs()
    options = dict(loss=loss, beta=0.3, temperature=1.7, alpha=alpha)
    live = kd_loss_from_hidden(sh, sw, th, tw, labels, chunk_size=chunk_size, top_k=5, **options)
    counted = labels != -100
    ids, log_probs = teacher_top_k((th @ tw.T)[counted][:, :V], 5, temperature=1.7)
    assert ids.shape == (int(counted.sum()), 5) and log_probs.shape == (int(counted.sum()), 6)
    torch.testing.assert_close(log_probs.exp().sum(1), torch.ones(ids.shape[0]), **TOL)  # the buckets hold all the mass
    cached = kd_loss_from_cache(sh, sw, ids, log_probs, labels, chunk_size=chunk_size, vocab_size=V, **options)
    for name in ("total", "kd", "ce"):
        torch.testing.assert_close(getattr(cached, name), getattr(live, name).detach(), **TOL)
    for got, want in zip(_grads(cached, sh, sw), _grads(live, sh, sw)):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("alpha", [0.5, 1.0])
@pytest.mark.parametrize("loss", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_compact_teacher_cache_stays_within_its_stated_tolerance_of_live_top_k(loss, alpha, seed):
    """The compact encoding (8-bit log-probs, exact tail) moves the loss and its gradients, within the stated bounds."""
    from distill_gui.core.teacher_cache_encoding import GRAD_RTOL, KD_RTOL, canonical

    sh, sw, th, tw, labels = _inputs(seed=seed)
    options = dict(loss=loss, beta=0.3, temperature=1.7, alpha=alpha)
    live = kd_loss_from_hidden(sh, sw, th, tw, labels, top_k=5, **options)
    counted = labels != -100
    ids, log_probs = canonical(*teacher_top_k((th @ tw.T)[counted][:, :V], 5, temperature=1.7))
    cached = kd_loss_from_cache(sh, sw, ids, log_probs, labels, vocab_size=V, **options)
    for name in ("total", "kd"):
        torch.testing.assert_close(getattr(cached, name), getattr(live, name).detach(), rtol=KD_RTOL, atol=0)
    torch.testing.assert_close(cached.ce, live.ce.detach(), **TOL)  # the hard labels do not pass through the cache
    moved = False
    for got, want in zip(_grads(cached, sh, sw), _grads(live, sh, sw)):
        assert (got - want).norm() <= GRAD_RTOL * want.norm()
        moved |= not torch.allclose(got, want, rtol=1e-6, atol=1e-7)
    assert moved  # quantized: the comparison is not of two identical computations


@pytest.mark.parametrize("top_k", [0, 5])
def test_bf16_matmuls_give_the_loss_of_bf16_logits(top_k):
    """matmul_dtype=bf16 (a bf16 run): the logits are the bf16 matmul's, the softmax and divergence float32."""
    sh, sw, th, tw, labels = _inputs(seed=4)
    options = dict(loss="forward_kl", temperature=1.3, alpha=0.6, top_k=top_k)
    bf = torch.bfloat16
    plain = kd_loss_from_logits((sh.to(bf) @ sw.to(bf).T).float(), (th.to(bf) @ tw.to(bf).T).float(), labels, **options)
    chunked = kd_loss_from_hidden(sh, sw, th, tw, labels, chunk_size=4, matmul_dtype=bf, **options)
    exact = kd_loss_from_hidden(sh, sw, th, tw, labels, chunk_size=4, **options)
    for name in ("total", "kd", "ce"):
        torch.testing.assert_close(getattr(chunked, name), getattr(plain, name).detach(), **TOL)
    assert chunked.total.dtype == torch.float32 and not torch.allclose(chunked.total, exact.total, rtol=1e-6, atol=0)
    for got, want in zip(_grads(chunked, sh, sw), _grads(exact, sh, sw)):
        assert got.dtype == want.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0.05, atol=0.02)  # the gradient matmuls run in bf16 too


def test_cached_teacher_rows_must_match_the_batch():
    sh, sw, th, tw, labels = _inputs()
    ids, log_probs = teacher_top_k(th @ tw.T, 5)  # every position, but some labels are masked
    with pytest.raises(ValueError, match="teacher cache rows do not match"):
        kd_loss_from_cache(sh, sw, ids, log_probs, labels, vocab_size=V)
    with pytest.raises(ValueError, match="top_k"):
        teacher_top_k(th @ tw.T, V + 4)


@pytest.mark.parametrize("loss, beta", [("jsd", 0.0), ("jsd", 1.0), ("jsd", 0.8), ("reverse_kl", 0.5)])
def test_chunked_matches_plain_float64_with_bias(loss, beta):
    sh, sw, th, tw, labels = _inputs(torch.float64, seed=3)
    sb = torch.randn(V, dtype=torch.float64).requires_grad_()
    tb = torch.randn(V + 4, dtype=torch.float64)
    options = dict(loss=loss, beta=beta, temperature=0.6, alpha=0.3, top_k=3)
    plain = kd_loss_from_logits(sh @ sw.T + sb, th @ tw.T + tb, labels, **options)
    chunked = kd_loss_from_hidden(sh, sw, th, tw, labels, chunk_size=3, student_bias=sb, teacher_bias=tb, **options)
    torch.testing.assert_close(chunked.total, plain.total.detach(), rtol=1e-12, atol=1e-12)
    for got, want in zip(_grads(chunked, sh, sw, sb), _grads(plain, sh, sw, sb)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_chunked_kd_and_ce_are_detached_and_total_scales():
    sh, sw, th, tw, labels = _inputs()
    parts = kd_loss_from_hidden(sh, sw, th, tw, labels, chunk_size=4)
    assert parts.total.requires_grad and not parts.kd.requires_grad and not parts.ce.requires_grad
    assert parts.total.shape == parts.kd.shape == parts.ce.shape == ()
    (2.5 * parts.total).backward()
    want = torch.autograd.grad(2.5 * _plain(sh, sw, th, tw, labels).total, (sh, sw))
    torch.testing.assert_close(sh.grad, want[0], **TOL)
    torch.testing.assert_close(sw.grad, want[1], **TOL)
    assert sh.grad[MASKED].abs().max() == 0


def test_frozen_head_gets_no_gradient():
    sh, sw, th, tw, labels = _inputs()
    sw.requires_grad_(False)
    parts = kd_loss_from_hidden(sh, sw, th, tw, labels, chunk_size=4, loss="reverse_kl", temperature=2.0)
    parts.total.backward()
    assert sw.grad is None
    torch.testing.assert_close(sh.grad, _grads(_plain(sh, sw, th, tw, labels, loss="reverse_kl", temperature=2.0), sh)[0], **TOL)


def test_no_grad_mode_gives_values():
    sh, sw, th, tw, labels = _inputs()
    with torch.no_grad():
        parts = kd_loss_from_hidden(sh, sw, th, tw, labels, chunk_size=4, loss="jsd")
        plain = _plain(sh, sw, th, tw, labels, loss="jsd")
    assert not parts.total.requires_grad
    torch.testing.assert_close(parts.total, plain.total, **TOL)


def test_bfloat16_inputs_give_a_float32_loss():
    sh, sw, th, tw, labels = _inputs()
    low = [t.detach().to(torch.bfloat16).requires_grad_(t.requires_grad) for t in (sh, sw, th, tw)]
    parts = kd_loss_from_hidden(*low, labels, chunk_size=4, temperature=2.0)
    assert parts.total.dtype == torch.float32
    parts.total.backward()
    assert low[0].grad.dtype == low[1].grad.dtype == torch.bfloat16
    reference = _plain(*(t.detach().to(torch.bfloat16).float() for t in (sh, sw, th, tw)), labels, temperature=2.0)
    torch.testing.assert_close(parts.total, reference.total, rtol=2e-2, atol=2e-2)


# ---- Divergences ---------------------------------------------------------------------------------


def _logits(seed, rows=7, vocab=V):
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def test_jsd_limits_are_the_kls():
    s, t = _logits(1), _logits(2)
    torch.testing.assert_close(generalized_jsd(s, t, beta=0.0, temperature=1.5), forward_kl(s, t, 1.5), rtol=0, atol=0)
    torch.testing.assert_close(generalized_jsd(s, t, beta=1.0, temperature=1.5), reverse_kl(s, t, 1.5), rtol=0, atol=0)


def test_divergences_by_definition():
    s, t = _logits(3), _logits(4)
    ps, pt = torch.softmax(s / 2, -1), torch.softmax(t / 2, -1)
    torch.testing.assert_close(forward_kl(s, t, 2.0), (pt * (pt.log() - ps.log())).sum(-1))
    torch.testing.assert_close(reverse_kl(s, t, 2.0), (ps * (ps.log() - pt.log())).sum(-1))
    m = 0.25 * pt + 0.75 * ps
    want = 0.25 * (pt * (pt.log() - m.log())).sum(-1) + 0.75 * (ps * (ps.log() - m.log())).sum(-1)
    torch.testing.assert_close(generalized_jsd(s, t, beta=0.25, temperature=2.0), want)


@pytest.mark.parametrize("fn", [forward_kl, reverse_kl, generalized_jsd])
def test_divergence_is_zero_for_equal_logits_and_never_negative(fn):
    s, t = _logits(5), _logits(6)
    same = fn(s, s.clone())
    assert same.shape == (7,)
    torch.testing.assert_close(same, torch.zeros(7, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (fn(s, t) >= 0).all() and (fn(s, t) > 0).any()


def test_kd_is_zero_for_equal_logits():
    s = _logits(7)
    labels = torch.arange(7)
    for loss in ("forward_kl", "reverse_kl", "jsd"):
        for top_k in (0, 4):
            parts = kd_loss_from_logits(s, s.clone(), labels, loss=loss, top_k=top_k, temperature=3.0)
            assert abs(parts.kd.item()) < 1e-12


def test_loss_parts_follow_their_definition():
    s, t = _logits(8, rows=9), _logits(9, rows=9)
    labels = torch.arange(9)
    labels[[2, 5]] = -100
    keep = labels != -100
    parts = kd_loss_from_logits(s, t, labels, loss="forward_kl", temperature=2.0, alpha=0.25)
    kd = forward_kl(s[keep], t[keep], 2.0).mean() * 4.0
    ce = torch.nn.functional.cross_entropy(s[keep], labels[keep])
    torch.testing.assert_close(parts.kd, kd)
    torch.testing.assert_close(parts.ce, ce)
    torch.testing.assert_close(parts.total, 0.25 * kd + 0.75 * ce)


# ---- Vocabulary, top-k, masking ------------------------------------------------------------------


def test_padded_vocabularies_use_the_shared_vocab():
    sh, sw, th, tw, labels = _inputs(v_student=V + 2, v_teacher=V + 9)
    parts = kd_loss_from_hidden(sh, sw, th, tw, labels, chunk_size=4, vocab_size=V, temperature=1.3)
    want = kd_loss_from_logits((sh @ sw[:V].T), (th @ tw[:V].T), labels, temperature=1.3)
    torch.testing.assert_close(parts.total, want.total.detach(), **TOL)
    parts.total.backward()
    assert sw.grad.shape == sw.shape and sw.grad[V:].abs().max() == 0
    torch.testing.assert_close(sw.grad[:V], torch.autograd.grad(want.total, sw)[0][:V], **TOL)
    # The default is the smaller vocabulary; logits are sliced the same way.
    default = kd_loss_from_hidden(sh, sw, th, tw, labels, chunk_size=4)
    sliced = kd_loss_from_logits(sh @ sw.T, th @ tw.T, labels)
    torch.testing.assert_close(default.total, sliced.total.detach(), **TOL)
    torch.testing.assert_close(sliced.total, kd_loss_from_logits(sh @ sw.T, (th @ tw.T)[:, : V + 2], labels).total)
    with pytest.raises(ValueError, match="vocab_size"):
        kd_loss_from_hidden(sh, sw, th, tw, labels, vocab_size=V + 3)


def test_top_k_of_whole_vocab_equals_full_kd():
    sh, sw, th, tw, labels = _inputs()
    for loss in ("forward_kl", "reverse_kl", "jsd"):
        full = kd_loss_from_hidden(sh, sw, th, tw, labels, loss=loss, chunk_size=4, temperature=1.5)
        for k in (V, V + 10):
            top = kd_loss_from_hidden(sh, sw, th, tw, labels, loss=loss, chunk_size=4, temperature=1.5, top_k=k)
            torch.testing.assert_close(top.total, full.total, rtol=0, atol=0)
            plain = _plain(sh, sw, th, tw, labels, loss=loss, temperature=1.5, top_k=k)
            torch.testing.assert_close(plain.total.detach(), full.total, **TOL)


def test_top_k_buckets_hold_the_right_mass():
    s, t = _logits(10), _logits(11)
    k, temperature = 4, 1.5
    sb, tb = topk_bucket_log_probs(s, t, k, temperature)
    assert sb.shape == tb.shape == (7, k + 1)
    ps, pt = torch.softmax(s / temperature, -1), torch.softmax(t / temperature, -1)
    idx = t.topk(k, -1).indices
    torch.testing.assert_close(tb[:, :k].exp(), pt.gather(1, idx))
    torch.testing.assert_close(sb[:, :k].exp(), ps.gather(1, idx))
    torch.testing.assert_close(tb[:, k].exp(), 1 - pt.gather(1, idx).sum(-1))
    torch.testing.assert_close(sb[:, k].exp(), 1 - ps.gather(1, idx).sum(-1))
    torch.testing.assert_close(sb.exp().sum(-1), torch.ones(7, dtype=torch.float64))
    # A tail far below float precision is still exact (log-sum-exp over the rest, not log1p(-sum)).
    peaked = t.clone()
    peaked[:, 0] = 200.0
    _, tb1 = topk_bucket_log_probs(s, peaked, 1)
    assert torch.isfinite(tb1).all() and (tb1[:, 1] < -100).all()
    # The top-k KD is the divergence over these buckets.
    labels = torch.zeros(7, dtype=torch.long)
    parts = kd_loss_from_logits(s, t, labels, top_k=k, temperature=temperature, alpha=1.0)
    torch.testing.assert_close(parts.kd, (tb.exp() * (tb - sb)).sum(-1).mean() * temperature**2)


@pytest.mark.parametrize("top_k", [0, 3])
def test_all_positions_masked_gives_zero(top_k):
    sh, sw, th, tw, labels = _inputs()
    labels[:] = -100
    for parts in (
        kd_loss_from_hidden(sh, sw, th, tw, labels, chunk_size=4, top_k=top_k, loss="jsd"),
        _plain(sh, sw, th, tw, labels, top_k=top_k, loss="jsd"),
    ):
        assert parts.total.item() == parts.kd.item() == parts.ce.item() == 0.0
        grads = _grads(parts, sh, sw)
        assert all(torch.isfinite(g).all() and g.abs().max() == 0 for g in grads)


def test_bad_options_are_refused():
    sh, sw, th, tw, labels = _inputs()
    bad = [dict(loss="mse"), dict(beta=1.5), dict(temperature=0.0), dict(alpha=-0.1), dict(top_k=-1), dict(chunk_size=0)]
    for options in bad:
        with pytest.raises(ValueError):
            kd_loss_from_hidden(sh, sw, th, tw, labels, **options)
        with pytest.raises(ValueError):
            _plain(sh, sw, th, tw, labels, **options)
    labels[2] = V + 1
    with pytest.raises(ValueError, match="labels"):
        kd_loss_from_hidden(sh, sw, th, tw, labels)


# ---- Against TRL ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trl_gkd_loss():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trl.experimental warns on import
        gkd = pytest.importorskip("trl.experimental.gkd")
    return gkd.GKDTrainer.generalized_jsd_loss


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_matches_trl_generalized_jsd_loss(trl_gkd_loss, beta):
    s, t = _logits(20 + int(beta * 10), rows=12).float(), _logits(40 + int(beta * 10), rows=12).float()
    temperature = 1.7
    # TRL with reduction="none" gives per-vocabulary terms [batch, seq, vocab]; their sum is per token.
    per_token = trl_gkd_loss(s[None], t[None], beta=beta, temperature=temperature, reduction="none").sum(-1)[0]
    torch.testing.assert_close(generalized_jsd(s, t, beta=beta, temperature=temperature), per_token, **TOL)
    if beta == 0.0:
        torch.testing.assert_close(forward_kl(s, t, temperature), per_token, **TOL)
    # TRL's "batchmean" with labels is the mean over counted tokens, without the T² factor.
    labels = torch.arange(12)
    labels[[0, 3, 4]] = -100
    trl_mean = trl_gkd_loss(s[None], t[None], labels=labels[None], beta=beta, temperature=temperature)
    ours = kd_loss_from_logits(s, t, labels, loss="jsd", beta=beta, temperature=temperature, alpha=1.0)
    torch.testing.assert_close(ours.kd / temperature**2, trl_mean, **TOL)
    assert math.isclose(ours.total.item(), ours.kd.item())
