"""Knowledge-distillation losses: pure functions over already-shifted, flattened positions.

Row ``i`` of every input predicts ``labels[i]``; ``-100`` marks a position that does not count.

* :func:`forward_kl`, :func:`reverse_kl` and :func:`generalized_jsd` give one divergence per position
  from two rows of logits, at a softmax temperature. The generalized JSD follows TRL's GKD convention
  (``GKDTrainer.generalized_jsd_loss``): the mixture is ``beta * p_teacher + (1 - beta) * p_student``,
  ``beta = 0`` gives exactly the forward KL and ``beta = 1`` exactly the reverse KL.
* :func:`kd_loss_from_logits` is the plain computation from full logits (reference and fallback).
* :func:`kd_loss_from_hidden` gives the same numbers from the last hidden states and the output heads,
  chunk by chunk over positions, without ever holding the full ``[positions, vocab]`` logits. Its
  gradients are computed in the forward pass, chunk by chunk (like Liger's fused linear
  cross-entropy), so backward keeps only gradient tensors the size of the inputs.

A head may be a plain weight ``[V, H]`` or an :class:`~distill_gui.core.heads.OutputHead`, which also
carries the model's logit post-processing (a scale, a soft cap: Gemma-2, Granite, Cohere); the chunked
path then computes exactly the logits of the model's ``forward``.

With ``top_k > 0`` both models' distributions are reduced to ``k + 1`` buckets: the teacher's top-k
tokens and one tail bucket holding the rest of the probability mass. The divergence is taken over the
buckets.

The loss is always computed in float32 (float64 when an input is float64), whatever the input dtype.
The head matmuls run in the inputs' common dtype, or in ``matmul_dtype`` when given (a bf16 run passes
bfloat16, as the models' own output layers would run under its autocast: the logits are then rounded
to bf16 before the float32 softmax, and the gradient matmuls run in bf16 with float32 accumulation
across chunks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from distill_gui.core.heads import OutputHead

KD_LOSSES = ("forward_kl", "reverse_kl", "jsd")
IGNORE_INDEX = -100


class LossParts(NamedTuple):
    """One step's losses (0-dim float tensors).

    ``total = alpha * kd + (1 - alpha) * ce`` is the one to backpropagate. From
    :func:`kd_loss_from_hidden`, ``kd`` and ``ce`` are detached values for logging.
    """

    total: torch.Tensor
    kd: torch.Tensor
    ce: torch.Tensor


@dataclass(frozen=True)
class _Spec:
    loss: str
    beta: float
    temperature: float
    alpha: float
    top_k: int
    chunk_size: int


def _spec(loss: str, beta: float, temperature: float, alpha: float, top_k: int, chunk_size: int) -> _Spec:
    if loss not in KD_LOSSES:
        raise ValueError(f"loss: {loss!r} is not a KD loss; choose one of {', '.join(KD_LOSSES)}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta: {beta!r} must lie between 0 and 1")
    if not temperature > 0.0:
        raise ValueError(f"temperature: {temperature!r} must be above 0")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: {alpha!r} must lie between 0 and 1")
    if top_k < 0:
        raise ValueError(f"top_k: {top_k!r} must be 0 (all tokens) or more")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: {chunk_size!r} must be at least 1")
    return _Spec(loss, float(beta), float(temperature), float(alpha), int(top_k), int(chunk_size))


def _loss_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 when any input is float64, otherwise float32."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


# ---- Divergences over log-probabilities ----------------------------------------------------------


def _divergence(kind: str, s: torch.Tensor, t: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-row divergence between student log-probs ``s`` and teacher log-probs ``t`` (last dim)."""
    if kind == "jsd" and beta == 0.0:
        kind = "forward_kl"
    elif kind == "jsd" and beta == 1.0:
        kind = "reverse_kl"
    if kind == "forward_kl":
        return (t.exp() * (t - s)).sum(-1)
    if kind == "reverse_kl":
        return (s.exp() * (s - t)).sum(-1)
    m = torch.logaddexp(s + math.log1p(-beta), t + math.log(beta))
    return beta * (t.exp() * (t - m)).sum(-1) + (1.0 - beta) * (s.exp() * (s - m)).sum(-1)


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum(-1)`` for 2-D tensors without a temporary of their size."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def _divergence_and_grad(kind: str, s: torch.Tensor, t: torch.Tensor, beta: float, want_grad: bool):
    """``(D, dD/ds)``: the per-row divergence and its gradient w.r.t. the student log-probs ``s``.

    Lean version of :func:`_divergence` for the chunked path: ``t`` is overwritten, ``s`` is kept.
    Analytic gradients: forward KL ``-p_t``; reverse KL ``p_s (s - t + 1)``; generalized JSD
    ``(1 - beta) p_s (s - m)`` with ``m`` the log of the mixture.
    """
    if kind == "jsd" and beta == 0.0:
        kind = "forward_kl"
    elif kind == "jsd" and beta == 1.0:
        kind = "reverse_kl"
    if kind == "forward_kl":
        pt = t.exp()
        d = t.sub_(s).mul_(pt).sum(-1)
        return d, (pt.neg_() if want_grad else None)
    if kind == "reverse_kl":
        ps = s.exp()
        diff = t.neg_().add_(s)
        d = _rowdot(ps, diff)
        return d, (diff.add_(1.0).mul_(ps) if want_grad else None)
    log_b, log_1mb = math.log(beta), math.log1p(-beta)
    m = s + log_1mb
    torch.logaddexp(m, t.add_(log_b), out=m)
    t.sub_(log_b)
    pt = t.exp()
    d = beta * _rowdot(pt, t.sub_(m))
    del pt
    ps = s.exp()
    s_minus_m = m.neg_().add_(s)
    d += (1.0 - beta) * _rowdot(ps, s_minus_m)
    return d, (s_minus_m.mul_(ps).mul_(1.0 - beta) if want_grad else None)


def _row_logsumexp(x: torch.Tensor) -> torch.Tensor:
    """``logsumexp(x, -1, keepdim=True)`` with one temporary of ``x``'s size (torch's makes two)."""
    top = x.amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return (x - top).exp_().sum(-1, keepdim=True).log_().add_(top)


def _full_log_probs(logits: torch.Tensor, temperature: float, dtype: torch.dtype) -> torch.Tensor:
    return F.log_softmax(logits.to(dtype) / temperature, dim=-1)


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(p_teacher || p_student) per position, both softmaxed at ``temperature``: shape ``[N]``."""
    dtype = _loss_dtype(student_logits, teacher_logits)
    s = _full_log_probs(student_logits, temperature, dtype)
    t = _full_log_probs(teacher_logits, temperature, dtype)
    return _divergence("forward_kl", s, t, 0.0)


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(p_student || p_teacher) per position, both softmaxed at ``temperature``: shape ``[N]``."""
    dtype = _loss_dtype(student_logits, teacher_logits)
    s = _full_log_probs(student_logits, temperature, dtype)
    t = _full_log_probs(teacher_logits, temperature, dtype)
    return _divergence("reverse_kl", s, t, 0.0)


def generalized_jsd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5, temperature: float = 1.0
) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence per position (TRL's GKD convention): shape ``[N]``.

    With ``m = beta * p_teacher + (1 - beta) * p_student`` it is
    ``beta * KL(p_teacher || m) + (1 - beta) * KL(p_student || m)``; ``beta = 0`` returns exactly the
    forward KL and ``beta = 1`` exactly the reverse KL.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta: {beta!r} must lie between 0 and 1")
    dtype = _loss_dtype(student_logits, teacher_logits)
    s = _full_log_probs(student_logits, temperature, dtype)
    t = _full_log_probs(teacher_logits, temperature, dtype)
    return _divergence("jsd", s, t, float(beta))


# ---- Top-k buckets -------------------------------------------------------------------------------


def topk_bucket_log_probs(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, top_k: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher log-probs over ``top_k + 1`` buckets: ``[N, k + 1]`` each.

    Buckets ``0..k-1`` are the teacher's top-k tokens per position (same tokens for the student);
    bucket ``k`` holds the rest of each model's probability mass (its log is a log-sum-exp over the
    remaining tokens, exact even when the tail is tiny). ``top_k`` must be below the vocabulary size.
    """
    vocab = teacher_logits.shape[-1]
    if not 0 < top_k < vocab:
        raise ValueError(f"top_k: {top_k} must lie between 1 and the vocabulary size - 1 ({vocab - 1})")
    dtype = _loss_dtype(student_logits, teacher_logits)
    u = student_logits.to(dtype) / temperature
    v = teacher_logits.to(dtype) / temperature
    idx = v.topk(top_k, dim=-1).indices
    s_all, t_all = torch.logsumexp(u, -1, keepdim=True), torch.logsumexp(v, -1, keepdim=True)
    s_rest = torch.logsumexp(u.scatter(-1, idx, -math.inf), -1, keepdim=True)
    t_rest = torch.logsumexp(v.scatter(-1, idx, -math.inf), -1, keepdim=True)
    s = torch.cat([u.gather(-1, idx), s_rest], dim=-1) - s_all
    t = torch.cat([v.gather(-1, idx), t_rest], dim=-1) - t_all
    return s, t


# ---- Plain computation from logits ---------------------------------------------------------------


def _keep_counted(labels: torch.Tensor, *rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``labels`` and the per-position ``rows`` tensors cut to the counted positions (label not -100)."""
    mask = labels != IGNORE_INDEX
    if bool(mask.all()):
        return (labels, *rows)
    index = mask.nonzero().squeeze(1)
    return tuple(t[index] for t in (labels, *rows))


def _check_labels(labels: torch.Tensor, vocab: int) -> None:
    if labels.numel() and (bool((labels < 0).any()) or bool((labels >= vocab).any())):
        bad = labels[(labels < 0) | (labels >= vocab)][0].item()
        raise ValueError(f"labels: {bad} is outside the shared vocabulary [0, {vocab}) and is not {IGNORE_INDEX}")


def kd_loss_from_logits(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    loss: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    alpha: float = 0.5,
    top_k: int = 0,
    chunk_size: int = 512,
    vocab_size: int | None = None,
) -> LossParts:
    """KD loss from full logits ``[N, V_s]`` / ``[N, V_t]`` and ``labels [N]`` (the plain reference).

    ``kd`` is the mean over counted positions of the divergence times ``temperature**2``; ``ce`` the
    mean cross-entropy of the student logits (temperature 1) against ``labels``; ``total`` is
    ``alpha * kd + (1 - alpha) * ce``. Both logits are cut to ``vocab_size`` (default: the smaller
    vocabulary). ``chunk_size`` is accepted for a common signature and not used.
    """
    spec = _spec(loss, beta, temperature, alpha, top_k, chunk_size)
    vocab = _shared_vocab(student_logits.shape[-1], teacher_logits.shape[-1], vocab_size)
    student_logits = student_logits.reshape(-1, student_logits.shape[-1])[:, :vocab]
    teacher_logits = teacher_logits.reshape(-1, teacher_logits.shape[-1])[:, :vocab].detach()
    labels = labels.reshape(-1)
    labels, student_logits, teacher_logits = _keep_counted(labels, student_logits, teacher_logits)
    _check_labels(labels, vocab)
    dtype = _loss_dtype(student_logits, teacher_logits)
    count = max(labels.numel(), 1)

    if 0 < spec.top_k < vocab:
        s, t = topk_bucket_log_probs(student_logits, teacher_logits, spec.top_k, spec.temperature)
    else:
        s = _full_log_probs(student_logits, spec.temperature, dtype)
        t = _full_log_probs(teacher_logits, spec.temperature, dtype)
    kd = _divergence(spec.loss, s, t, spec.beta).sum() * (spec.temperature**2 / count)
    ce = F.cross_entropy(student_logits.to(dtype), labels, reduction="sum") / count
    return LossParts(spec.alpha * kd + (1.0 - spec.alpha) * ce, kd, ce)


def _shared_vocab(v_student: int, v_teacher: int, vocab_size: int | None) -> int:
    shared = min(v_student, v_teacher)
    if vocab_size is None:
        return shared
    if not 0 < vocab_size <= shared:
        raise ValueError(f"vocab_size: {vocab_size} must lie between 1 and the smaller vocabulary ({shared})")
    return int(vocab_size)


# ---- Chunked computation from hidden states ------------------------------------------------------


def _logits(hidden: torch.Tensor, head: torch.Tensor, bias: torch.Tensor | None, vocab: int, dtype: torch.dtype):
    """``hidden @ head[:vocab].T (+ bias)`` in the inputs' common dtype, returned as ``dtype``."""
    mm_dtype = torch.promote_types(hidden.dtype, head.dtype)
    out = hidden.to(mm_dtype) @ head[:vocab].to(mm_dtype).T
    out = out.to(dtype)
    if bias is not None:
        out += bias[:vocab].to(dtype)
    return out


_Post = tuple  # (scale, softcap | None) applied after the head's matmul; None when there is none


def _head_parts(head: "torch.Tensor | OutputHead", bias: torch.Tensor | None, side: str) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
    """(weight, bias, post-processing) of a head given as a weight tensor or an :class:`OutputHead`."""
    if not isinstance(head, OutputHead):
        return head, bias, None
    if bias is not None and head.bias is not None:
        raise ValueError(f"{side}_bias: given twice (as {side}_bias and in the {side} OutputHead); pass one")
    return head.weight, head.bias if bias is None else bias, None if head.is_plain else (float(head.scale), head.softcap)


def _postprocess(z: torch.Tensor, post: _Post | None, want_grad: bool) -> torch.Tensor | float | None:
    """Apply ``post`` = (scale, softcap) to the logits ``z`` in place; returns dz/d(raw logits): a tensor
    for a soft cap (one more chunk-sized buffer), a number for a plain scale, None for nothing to do."""
    if post is None:
        return None
    scale, cap = post
    if cap is None:
        z.mul_(scale)
        return scale
    z.mul_(scale / cap).tanh_()
    factor = torch.square(z).neg_().add_(1.0).mul_(scale) if want_grad else None  # d/dx cap*tanh(scale*x/cap)
    z.mul_(cap)
    return factor


def _head_logits(
    hidden, head, bias, vocab: int, dtype: torch.dtype, post: _Post | None, want_grad: bool = False, factor_out: list | None = None
) -> torch.Tensor:
    """The post-processed logits of one chunk; d(logits)/d(raw logits) is appended to ``factor_out``."""
    z = _logits(hidden, head, bias, vocab, dtype)
    factor = _postprocess(z, post, want_grad)
    if factor_out is not None:
        factor_out.append(factor)
    return z


def _teacher_buckets(v: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-k ids ``[n, k]``, log-probs ``[n, k + 1]`` of those tokens and the tail) of logits ``v``
    already divided by the temperature; ``v`` is overwritten."""
    idx = v.topk(top_k, dim=-1).indices
    t_all = _row_logsumexp(v)
    t = v.gather(1, idx)
    t_rest = _row_logsumexp(v.scatter_(1, idx, -math.inf))
    return idx, torch.cat([t, t_rest], 1).sub_(t_all)


def teacher_top_k(logits: torch.Tensor, top_k: int, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """What an offline teacher cache keeps of ``logits [n, V]``: the top-k token ids and the log-probs
    at ``temperature`` of those k tokens plus a tail bucket (last column), as the top-k KD loss uses them."""
    if not 0 < top_k < logits.shape[-1]:
        raise ValueError(f"top_k: {top_k} must lie between 1 and the vocabulary size - 1 ({logits.shape[-1] - 1})")
    return _teacher_buckets(logits.float().div(temperature), top_k)


def _chunk_kd(
    zs: torch.Tensor,
    zt: torch.Tensor | None,
    labels: torch.Tensor,
    spec: _Spec,
    count: int,
    want_grad: bool,
    cached: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Sums of the divergence and the cross-entropy over one chunk, and d(total)/d(student logits).

    ``zs`` and ``zt`` are the chunk's float logits and are consumed (overwritten). At most three
    chunk-sized buffers are alive at once (four for the generalized JSD). With ``cached`` = (top-k
    token ids ``[n, k]``, teacher bucket log-probs ``[n, k + 1]`` at the temperature, tail last) the
    teacher's logits are not needed (``zt`` is None): an offline teacher cache.
    """
    T, a = spec.temperature, spec.alpha
    vocab = zs.shape[-1]
    kd_scale = a * T * T / count  # d total / d divergence (per row)
    ce_scale = (1.0 - a) / count  # d total / d cross-entropy (per row)
    want_kd_grad = want_grad and kd_scale != 0.0
    want_ce_grad = want_grad and ce_scale != 0.0
    label_logit = zs.gather(1, labels[:, None])
    lse1 = _row_logsumexp(zs) if T != 1.0 else None  # student log-normaliser at temperature 1

    # Teacher: from here only its log-probs (or bucket log-probs) are needed.
    if cached is not None:
        idx, t = cached[0].long(), cached[1].to(zs.dtype)
        top_k = idx.shape[1]
    else:
        assert zt is not None
        v = zt.div_(T) if T != 1.0 else zt
        top_k = spec.top_k if 0 < spec.top_k < vocab else 0
        if top_k:
            idx, t = _teacher_buckets(v, top_k)
        else:
            t = F.log_softmax(v, dim=-1)
        del v, zt

    u = zs.div_(T) if T != 1.0 else zs
    if not top_k:
        s = F.log_softmax(u, dim=-1)
        top = u.argmax(-1, keepdim=True)
        log_norm = u.gather(1, top) - s.gather(1, top)  # logsumexp of u, read off the log-softmax
        del u, zs
        if lse1 is None:
            lse1 = log_norm
        ce_sum = (lse1 - label_logit).sum()
        d, g = _divergence_and_grad(spec.loss, s, t, spec.beta, want_kd_grad)
        del t
        grad = None
        if want_kd_grad:
            # s = log_softmax(u): d/du = g - p_s * sum(g), and du/dz = 1/T.
            g_sum = g.sum(1, keepdim=True)
            grad = g.sub_(torch.exp(s).mul_(g_sum)).mul_(kd_scale / T)
        if want_ce_grad:
            # softmax at temperature 1 of z = T * (s + log_norm)
            ce_grad = s.mul_(T).add_(T * log_norm - lse1).exp_().mul_(ce_scale)
            grad = ce_grad if grad is None else grad.add_(ce_grad)
            del ce_grad
        del s
    else:
        s_all = _row_logsumexp(u)
        if lse1 is None:
            lse1 = s_all
        ce_sum = (lse1 - label_logit).sum()
        s_top = u.gather(1, idx)
        p_top = (s_top - s_all).exp_()
        u.scatter_(1, idx, -math.inf)  # u now holds only the rest (the tail bucket's tokens)
        s_rest = _row_logsumexp(u)
        s = torch.cat([s_top, s_rest], 1).sub_(s_all)
        d, g = _divergence_and_grad(spec.loss, s, t, spec.beta, want_kd_grad)
        del s, t
        ce_grad = None
        if want_ce_grad:
            # softmax at temperature 1 of z = T * u, the top-k entries restored from s_top
            ce_grad = (u * T).sub_(lse1).exp_()
            ce_grad.scatter_(1, idx, (s_top * T).sub_(lse1).exp_()).mul_(ce_scale)
        grad = None
        if want_kd_grad:
            # b_j = u[idx_j] - s_all: d/du_i = [i = idx_j] - p_i
            # b_tail = s_rest - s_all: d/du_i = [i in rest] p_i / P_rest - p_i, with p_i / P_rest = exp(u_i - s_rest)
            g_sum = g.sum(1, keepdim=True)
            rest_scale = g[:, -1:] - g_sum * (s_rest - s_all).exp()
            grad = u.sub_(s_rest).exp_().mul_(rest_scale)
            grad.scatter_(1, idx, g[:, :-1] - p_top * g_sum).mul_(kd_scale / T)
        if ce_grad is not None:
            grad = ce_grad if grad is None else grad.add_(ce_grad)
        del u, zs, ce_grad
    if want_ce_grad:
        assert grad is not None
        grad.scatter_add_(1, labels[:, None], torch.full_like(label_logit, -ce_scale))
    return d.sum(), ce_sum, grad


class _ChunkedKD(torch.autograd.Function):
    """Forward computes the losses and, chunk by chunk, the gradients; backward only scales them."""

    @staticmethod
    def forward(
        ctx,
        s_hidden,
        s_head,
        s_bias,
        t_hidden,
        t_head,
        t_bias,
        labels,
        spec: _Spec,
        vocab: int,
        grad_on: bool,
        t_ids=None,
        t_logp=None,
        s_post: _Post | None = None,
        t_post: _Post | None = None,
        matmul_dtype: torch.dtype | None = None,
    ):
        want_h, want_w, want_b = (grad_on and ctx.needs_input_grad[i] for i in range(3))
        want_grad = want_h or want_w or want_b
        dtype = _loss_dtype(s_hidden, s_head, t_hidden, t_head)
        device = s_hidden.device
        n = s_hidden.shape[0]
        count = max(n, 1)
        mm_dtype = matmul_dtype or torch.promote_types(s_hidden.dtype, s_head.dtype)
        acc_dtype = torch.promote_types(mm_dtype, torch.float32)
        # Each head cast once for all chunks (a cast per chunk re-reads the whole [vocab, hidden] weight).
        s_head_mm = s_head[:vocab].to(mm_dtype)
        if t_head is not None:
            t_mm = matmul_dtype or torch.promote_types(t_hidden.dtype, t_head.dtype)
            t_head = t_head[:vocab].to(t_mm)

        grad_h = torch.zeros_like(s_hidden) if want_h else None
        grad_w = torch.zeros(s_head.shape, dtype=acc_dtype, device=device) if want_w else None
        grad_b = torch.zeros(s_bias.shape, dtype=acc_dtype, device=device) if want_b else None
        kd_sum = torch.zeros((), dtype=dtype, device=device)
        ce_sum = torch.zeros((), dtype=dtype, device=device)

        with torch.autocast(device_type=device.type, enabled=False), torch.no_grad():
            for start in range(0, n, spec.chunk_size):
                stop = min(start + spec.chunk_size, n)
                h = s_hidden[start:stop]
                # The logits are handed over without a name here, so _chunk_kd can free them early.
                cached = None if t_ids is None else (t_ids[start:stop], t_logp[start:stop])
                s_factor: list = []
                kd_c, ce_c, g = _chunk_kd(
                    _head_logits(h.to(mm_dtype), s_head_mm, s_bias, vocab, dtype, s_post, want_grad, s_factor),
                    None
                    if cached is not None
                    else _head_logits(t_hidden[start:stop].to(t_head.dtype), t_head, t_bias, vocab, dtype, t_post),
                    labels[start:stop],
                    spec,
                    count,
                    want_grad,
                    cached,
                )
                kd_sum += kd_c
                ce_sum += ce_c
                if g is None:
                    continue
                if s_factor[0] is not None:  # chain rule through the student's logit post-processing
                    g.mul_(s_factor.pop())
                g_mm = g.to(mm_dtype)
                if grad_h is not None:
                    grad_h[start:stop] = (g_mm @ s_head_mm).to(grad_h.dtype)
                if grad_w is not None:
                    if mm_dtype == acc_dtype:
                        grad_w[:vocab].addmm_(g_mm.T, h.to(mm_dtype))
                    else:
                        grad_w[:vocab] += g_mm.T @ h.to(mm_dtype)
                if grad_b is not None:
                    grad_b[:vocab] += g.sum(0).to(acc_dtype)
                del g, g_mm

        kd = kd_sum * (spec.temperature**2 / count)
        ce = ce_sum / count
        total = spec.alpha * kd + (1.0 - spec.alpha) * ce
        if grad_w is not None:
            grad_w = grad_w.to(s_head.dtype)
        if grad_b is not None:
            grad_b = grad_b.to(s_bias.dtype)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.mark_non_differentiable(kd, ce)
        return total, kd, ce

    @staticmethod
    def backward(ctx, grad_total, _grad_kd, _grad_ce):
        grads = ctx.saved_tensors
        # The usual case, total.backward(), passes 1: hand the stored gradients over without a copy.
        if not torch.equal(grad_total, torch.ones_like(grad_total)):
            grads = tuple(g * grad_total.to(g.dtype) if g is not None else None for g in grads)
        return (*grads, None, None, None, None, None, None, None, None, None, None, None, None)


def kd_loss_from_hidden(
    student_hidden: torch.Tensor,
    student_head: torch.Tensor | OutputHead,
    teacher_hidden: torch.Tensor,
    teacher_head: torch.Tensor | OutputHead,
    labels: torch.Tensor,
    *,
    loss: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    alpha: float = 0.5,
    top_k: int = 0,
    chunk_size: int = 512,
    vocab_size: int | None = None,
    student_bias: torch.Tensor | None = None,
    teacher_bias: torch.Tensor | None = None,
    matmul_dtype: torch.dtype | None = None,
) -> LossParts:
    """KD loss from last hidden states and output heads, ``chunk_size`` positions at a time.

    ``student_hidden [N, H_s]`` and ``teacher_hidden [N, H_t]`` are already shifted so row ``i``
    predicts ``labels[i]``; the heads are output-embedding weights ``[V_s, H_s]`` / ``[V_t, H_t]``, or
    :class:`~distill_gui.core.heads.OutputHead` s (from :func:`~distill_gui.core.heads.output_head`), whose
    scale and soft cap are applied to the logits as the models' ``forward`` does. Gives the same values and gradients as :func:`kd_loss_from_logits` on the full logits, while
    holding at most one chunk of logits at a time. Only positions whose label is not -100 are
    computed. Gradients reach ``student_hidden``, ``student_head`` and ``student_bias`` where they
    require grad; the teacher side is treated as constant. ``kd`` and ``ce`` of the result are
    detached (for logging); backpropagate ``total``. ``matmul_dtype`` (e.g. ``torch.bfloat16`` in a
    bf16 run): the dtype of the head matmuls; None: the inputs' common dtype.
    """
    spec = _spec(loss, beta, temperature, alpha, top_k, chunk_size)
    student_head, student_bias, s_post = _head_parts(student_head, student_bias, "student")
    teacher_head, teacher_bias, t_post = _head_parts(teacher_head, teacher_bias, "teacher")
    if student_hidden.shape[-1] != student_head.shape[-1] or teacher_hidden.shape[-1] != teacher_head.shape[-1]:
        raise ValueError(
            f"hidden size mismatch: student {tuple(student_hidden.shape)} vs head {tuple(student_head.shape)}, "
            f"teacher {tuple(teacher_hidden.shape)} vs head {tuple(teacher_head.shape)}"
        )
    vocab = _shared_vocab(student_head.shape[0], teacher_head.shape[0], vocab_size)
    student_hidden = student_hidden.reshape(-1, student_hidden.shape[-1])
    teacher_hidden = teacher_hidden.reshape(-1, teacher_hidden.shape[-1]).detach()
    labels = labels.reshape(-1)
    if not student_hidden.shape[0] == teacher_hidden.shape[0] == labels.shape[0]:
        raise ValueError(
            f"positions differ: student {student_hidden.shape[0]}, teacher {teacher_hidden.shape[0]}, labels {labels.shape[0]}"
        )
    labels, student_hidden, teacher_hidden = _keep_counted(labels, student_hidden, teacher_hidden)
    _check_labels(labels, vocab)
    teacher_bias = teacher_bias.detach() if teacher_bias is not None else None
    total, kd, ce = _ChunkedKD.apply(
        student_hidden,
        student_head,
        student_bias,
        teacher_hidden,
        teacher_head.detach(),
        teacher_bias,
        labels,
        spec,
        vocab,
        torch.is_grad_enabled(),
        None,
        None,
        s_post,
        t_post,
        matmul_dtype,
    )
    return LossParts(total, kd, ce)


def kd_loss_from_cache(
    student_hidden: torch.Tensor,
    student_head: torch.Tensor | OutputHead,
    teacher_ids: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    loss: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    alpha: float = 0.5,
    chunk_size: int = 512,
    vocab_size: int | None = None,
    student_bias: torch.Tensor | None = None,
    matmul_dtype: torch.dtype | None = None,
) -> LossParts:
    """KD loss against an offline teacher cache (:mod:`distill_gui.core.teacher_cache`).

    ``teacher_ids [M, k]`` and ``teacher_log_probs [M, k + 1]`` (the teacher's top-k tokens and the
    log-probs at ``temperature`` of those k buckets plus the tail, tail last) hold one row per
    *counted* position of ``labels`` (label not -100), in order. Gives the same values and gradients
    as :func:`kd_loss_from_hidden` with ``top_k=k`` on the live teacher, without the teacher.
    ``student_head`` is a weight or an :class:`~distill_gui.core.heads.OutputHead` (as in
    :func:`kd_loss_from_hidden`); the cache holds the teacher's post-processed log-probs already.
    """
    spec = _spec(loss, beta, temperature, alpha, teacher_ids.shape[-1], chunk_size)
    student_head, student_bias, s_post = _head_parts(student_head, student_bias, "student")
    if student_hidden.shape[-1] != student_head.shape[-1]:
        raise ValueError(f"hidden size mismatch: student {tuple(student_hidden.shape)} vs head {tuple(student_head.shape)}")
    vocab = _shared_vocab(student_head.shape[0], student_head.shape[0], vocab_size)
    student_hidden = student_hidden.reshape(-1, student_hidden.shape[-1])
    labels = labels.reshape(-1)
    if student_hidden.shape[0] != labels.shape[0]:
        raise ValueError(f"positions differ: student {student_hidden.shape[0]}, labels {labels.shape[0]}")
    labels, student_hidden = _keep_counted(labels, student_hidden)
    if (
        not (teacher_ids.shape[0] == teacher_log_probs.shape[0] == labels.shape[0])
        or teacher_log_probs.shape[1] != teacher_ids.shape[1] + 1
    ):
        raise ValueError(
            f"teacher cache rows do not match the batch: {labels.shape[0]} counted positions, "
            f"ids {tuple(teacher_ids.shape)}, log-probs {tuple(teacher_log_probs.shape)}"
        )
    _check_labels(labels, vocab)
    total, kd, ce = _ChunkedKD.apply(
        student_hidden,
        student_head,
        student_bias,
        None,
        None,
        None,
        labels,
        spec,
        vocab,
        torch.is_grad_enabled(),
        teacher_ids,
        teacher_log_probs.detach(),
        s_post,
        None,
        matmul_dtype,
    )
    return LossParts(total, kd, ce)
