"""Cross-tokenizer KD losses over aligned token groups (:mod:`distill_gui.core.token_alignment`).

Each aligned group is a stretch of text both models predicted from the same preceding text. Its
*merged* distribution on each side follows TRL's GOLD trainer ("observed" merge): the model's full
next-token distribution at the group's first token, times the probabilities the model gave the
group's later tokens (the chain rule; an unnormalised measure over the first token).

* ``uld`` — Universal Logit Distillation (Boizard et al., 2024): the L1 distance between the two merged
  probability vectors sorted in decreasing order, the shorter padded with zeros.
* ``gold`` — tokens both vocabularies hold with the same string are compared directly, by the
  generalized KL ``sum p log(p/q) - p + q`` of the teacher's (p) and student's (q) merged
  probabilities (the KL itself when both are distributions); the remaining tokens of each side by the
  sorted L1 distance of ULD, weighted by ``unmatched_weight``. With one shared tokenizer every group
  is one token, every token is shared, and ``gold`` is exactly the forward KL of ordinary KD.

All probabilities are taken at ``temperature``; the divergence is scaled by T² and averaged over the
trained student tokens, mixed with the student's own cross-entropy as ``alpha * kd + (1 - alpha) * ce``
(the convention of :mod:`distill_gui.core.losses`).

:func:`cross_kd_loss_from_hidden` computes this from the final hidden states and the output heads a
chunk of groups at a time; each chunk's student logits are recomputed in backward (activation
checkpointing), so at most one chunk of ``[groups, vocabulary]`` logits is alive at once.
:func:`cross_kd_loss_reference` is the plain version from full logits, for the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from distill_gui.core.heads import OutputHead
from distill_gui.core.losses import IGNORE_INDEX, LossParts
from distill_gui.core.token_alignment import AlignedGroup, SharedTokens

ALIGNMENTS = ("uld", "gold")


# ---- Divergences between merged distributions (rows of log-probabilities) -----------------------


def sorted_l1(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per row: ``sum |sort(p) - sort(q)|`` of two probability rows sorted in decreasing order (zero-padded)."""
    width = max(p.shape[-1], q.shape[-1])
    ps = F.pad(p.sort(-1, descending=True).values, (0, width - p.shape[-1]))
    qs = F.pad(q.sort(-1, descending=True).values, (0, width - q.shape[-1]))
    return (ps - qs).abs().sum(-1)


def generalized_kl(t_logp: torch.Tensor, s_logp: torch.Tensor) -> torch.Tensor:
    """Per row: ``sum p (log p - log q) - p + q`` for p = exp(t_logp), q = exp(s_logp); 0 where p = 0."""
    p = t_logp.exp()
    q = s_logp.exp()
    term = torch.where(p > 0, p * (t_logp - s_logp), torch.zeros_like(p))
    return (term - p + q).sum(-1)


@dataclass(frozen=True)
class GoldColumns:
    """Column indices of the shared and the other tokens, as tensors on one device."""

    t_shared: torch.Tensor
    s_shared: torch.Tensor
    t_other: torch.Tensor
    s_other: torch.Tensor

    @classmethod
    def build(cls, shared: SharedTokens, teacher_vocab: int, student_vocab: int, device: torch.device | str = "cpu") -> "GoldColumns":
        t_shared = torch.tensor(shared.teacher_ids, dtype=torch.long)
        s_shared = torch.tensor(shared.student_ids, dtype=torch.long)
        t_mask = torch.ones(teacher_vocab, dtype=torch.bool)
        t_mask[t_shared] = False
        s_mask = torch.ones(student_vocab, dtype=torch.bool)
        s_mask[s_shared] = False
        return cls(t_shared.to(device), s_shared.to(device), t_mask.nonzero().squeeze(1).to(device), s_mask.nonzero().squeeze(1).to(device))

    def to(self, device: torch.device) -> "GoldColumns":
        return GoldColumns(*(t.to(device) for t in (self.t_shared, self.s_shared, self.t_other, self.s_other)))


def group_divergence(
    alignment: str, s_logp: torch.Tensor, t_logp: torch.Tensor, columns: GoldColumns | None = None, unmatched_weight: float = 1.0
) -> torch.Tensor:
    """Per group: the divergence between merged student and teacher log-probabilities ``[g, V_s]``, ``[g, V_t]``."""
    if alignment == "uld":
        return sorted_l1(s_logp.exp(), t_logp.exp())
    if alignment != "gold":
        raise ValueError(f"alignment: {alignment!r} is not one of {', '.join(ALIGNMENTS)}")
    if columns is None:
        raise ValueError("alignment gold needs the shared-token columns")
    d = generalized_kl(t_logp[:, columns.t_shared], s_logp[:, columns.s_shared])
    if unmatched_weight and (columns.t_other.numel() or columns.s_other.numel()):
        d = d + unmatched_weight * sorted_l1(s_logp[:, columns.s_other].exp(), t_logp[:, columns.t_other].exp())
    return d


# ---- The teacher's side reduced to its top-k (what a teacher cache keeps) -------------------------


def teacher_top_k_groups(t_logp: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-k teacher ids ``[g, k]``, log-probs ``[g, k + 1]``) of merged teacher log-probs ``[g, V_t]``: the k
    most likely tokens and, last, the log of the rest of the group's merged mass (exact, a log-sum-exp)."""
    if not 0 < top_k < t_logp.shape[-1]:
        raise ValueError(f"top_k: {top_k} must lie between 1 and the teacher's vocabulary size - 1 ({t_logp.shape[-1] - 1})")
    values, ids = t_logp.topk(top_k, dim=-1)
    rest = torch.logsumexp(t_logp.scatter(-1, ids, -math.inf), -1, keepdim=True)
    return ids, torch.cat([values, rest], -1)


def group_divergence_top_k(
    alignment: str, s_logp: torch.Tensor, t_ids: torch.Tensor, t_lp: torch.Tensor, teacher_to_student: torch.Tensor | None = None
) -> torch.Tensor:
    """Per group, against the teacher's top-k (``t_ids [g, k]``, ``t_lp [g, k + 1]`` with the rest last).

    ``uld``: the sorted L1 distance over the k largest probabilities of each side plus the difference of the
    two rests. ``gold``: the generalized KL over the teacher's top-k tokens the student's vocabulary holds
    (``teacher_to_student``: student id per teacher id, -1 for none) plus one bucket each for all other
    mass. With one shared tokenizer this is top-k KD's divergence over k + 1 buckets.
    """
    k = t_ids.shape[-1]
    p_top, t_rest = t_lp[:, :k].exp(), t_lp[:, k].exp()
    q = s_logp.exp()
    if alignment == "uld":
        q_sorted = q.sort(-1, descending=True).values
        width = min(k, q_sorted.shape[-1])
        head = (q_sorted[:, :width] - p_top[:, :width]).abs().sum(-1) + p_top[:, width:].sum(-1)
        return head + (q_sorted[:, width:].sum(-1) - t_rest).abs()
    if alignment != "gold":
        raise ValueError(f"alignment: {alignment!r} is not one of {', '.join(ALIGNMENTS)}")
    if teacher_to_student is None:
        raise ValueError("alignment gold needs the teacher-to-student id map")
    s_ids = teacher_to_student[t_ids]
    shared = s_ids >= 0
    s_top = s_logp.gather(1, s_ids.clamp_min(0))
    t_top = t_lp[:, :k]
    term = torch.where(shared, p_top * (t_top - s_top) - p_top + s_top.exp(), torch.zeros_like(p_top)).sum(-1)
    t_other = t_rest + torch.where(shared, torch.zeros_like(p_top), p_top).sum(-1)
    s_other = (q.sum(-1) - torch.where(shared, s_top.exp(), torch.zeros_like(p_top)).sum(-1)).clamp_min(0.0)
    bucket = torch.where(
        t_other > 0, t_other * (t_other.clamp_min(1e-30).log() - s_other.clamp_min(1e-30).log()), torch.zeros_like(t_other)
    )
    return term + bucket - t_other + s_other


def teacher_to_student_map(shared: SharedTokens, teacher_vocab: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Student id per teacher id (-1 where the student's vocabulary lacks the token)."""
    out = torch.full((teacher_vocab,), -1, dtype=torch.long)
    ids = [(t, s) for t, s in zip(shared.teacher_ids, shared.student_ids) if t < teacher_vocab]
    if ids:
        out[torch.tensor([t for t, _ in ids])] = torch.tensor([s for _, s in ids])
    return out.to(device)


# ---- Which rows of which tensor a batch's groups read -------------------------------------------


@dataclass(frozen=True)
class GroupIndex:
    """Flat positions for ``B`` rows of length ``L`` (row ``b``, position ``i`` -> ``b * L + i``).

    ``base[g]``: the position whose distribution predicts group ``g``'s first token; ``extra_*``: for each
    later token of a group, the group, the predicting position and the token id.
    """

    base: torch.Tensor
    extra_group: torch.Tensor
    extra_pos: torch.Tensor
    extra_token: torch.Tensor

    @classmethod
    def build(cls, rows: Sequence[tuple[Sequence[int], Sequence[tuple[int, int]]]], length: int) -> "GroupIndex":
        """``rows``: per batch row, (its token ids, its groups as (start, end) token ranges)."""
        base: list[int] = []
        eg: list[int] = []
        ep: list[int] = []
        et: list[int] = []
        for b, (ids, spans) in enumerate(rows):
            for start, end in spans:
                g = len(base)
                base.append(b * length + start - 1)
                for k in range(start + 1, end):
                    eg.append(g)
                    ep.append(b * length + k - 1)
                    et.append(int(ids[k]))

        def t(x: list[int]) -> torch.Tensor:
            return torch.tensor(x, dtype=torch.long)

        return cls(t(base), t(eg), t(ep), t(et))

    def chunk(self, start: int, stop: int) -> "GroupIndex":
        keep = (self.extra_group >= start) & (self.extra_group < stop)
        return GroupIndex(self.base[start:stop], self.extra_group[keep] - start, self.extra_pos[keep], self.extra_token[keep])

    def to(self, device: torch.device) -> "GroupIndex":
        return GroupIndex(*(t.to(device) for t in (self.base, self.extra_group, self.extra_pos, self.extra_token)))


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def merged_log_probs(logits_at, index: GroupIndex, temperature: float) -> torch.Tensor:
    """``[g, V]`` merged log-probs of the groups of ``index``; ``logits_at(positions)`` gives ``[n, V]`` logits."""
    base = F.log_softmax(_at_least_float32(logits_at(index.base)) / temperature, dim=-1)
    if index.extra_pos.numel() == 0:
        return base
    extra = F.log_softmax(_at_least_float32(logits_at(index.extra_pos)) / temperature, dim=-1)
    picked = extra.gather(1, index.extra_token[:, None]).squeeze(1)
    offset = torch.zeros(base.shape[0], dtype=base.dtype, device=base.device).index_add(0, index.extra_group, picked)
    return base + offset[:, None]


def as_head(head: torch.Tensor | OutputHead) -> OutputHead:
    """An :class:`OutputHead` for a plain weight ``[V, H]``."""
    return head if isinstance(head, OutputHead) else OutputHead(head)


def teacher_top_k_for_groups(
    teacher_hidden: torch.Tensor,
    teacher_head: torch.Tensor | OutputHead,
    index: GroupIndex,
    *,
    top_k: int,
    temperature: float = 1.0,
    teacher_vocab: int | None = None,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a teacher cache keeps of a batch's groups: (ids ``[G, k]``, log-probs ``[G, k + 1]``), from the teacher's
    flattened hidden states, a chunk of groups at a time."""
    head = as_head(teacher_head)
    index = index.to(teacher_hidden.device)
    ids, lps = [], []
    with torch.no_grad():
        for start in range(0, index.base.numel(), chunk_size):
            part = index.chunk(start, min(start + chunk_size, index.base.numel()))
            t_logp = merged_log_probs(lambda pos: head.logits(teacher_hidden[pos], teacher_vocab), part, temperature)
            i, lp = teacher_top_k_groups(t_logp, top_k)
            ids.append(i)
            lps.append(lp)
    if not ids:
        return torch.zeros((0, top_k), dtype=torch.long), torch.zeros((0, top_k + 1))
    return torch.cat(ids), torch.cat(lps)


# ---- The loss ------------------------------------------------------------------------------------


def _ce_sum(student_hidden: torch.Tensor, student_head: OutputHead, vocab: int, labels: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Sum of the student's cross-entropy over the counted positions, a chunk at a time (checkpointed)."""
    keep = (labels != IGNORE_INDEX).nonzero().squeeze(1)
    total = torch.zeros((), dtype=torch.promote_types(student_hidden.dtype, torch.float32), device=student_hidden.device)

    def piece(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(student_head.logits(h, vocab), y, reduction="sum")

    for start in range(0, keep.numel(), chunk_size):
        idx = keep[start : start + chunk_size]
        total = total + checkpoint(piece, student_hidden[idx], labels[idx], use_reentrant=False)
    return total


def cross_kd_loss_from_hidden(
    student_hidden: torch.Tensor,
    student_head: torch.Tensor | OutputHead,
    teacher_hidden: torch.Tensor | None,
    teacher_head: torch.Tensor | OutputHead | None,
    labels: torch.Tensor,
    student_index: GroupIndex,
    teacher_index: GroupIndex,
    *,
    alignment: str = "gold",
    columns: GoldColumns | None = None,
    temperature: float = 1.0,
    alpha: float = 0.5,
    unmatched_weight: float = 1.0,
    chunk_size: int = 256,
    trained_tokens: int | None = None,
    student_vocab: int | None = None,
    teacher_vocab: int | None = None,
    top_k: int = 0,
    teacher_to_student: torch.Tensor | None = None,
    cached: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> LossParts:
    """Cross-tokenizer KD from flattened hidden states ``[B*L_s, H_s]``, ``[B*L_t, H_t]`` and shifted
    ``labels [B*L_s]`` (row ``i`` predicts ``labels[i]``), groups given by the two :class:`GroupIndex` es.

    ``kd`` is ``T² * sum of group divergences / trained tokens`` (``trained_tokens``: default, the
    counted labels); ``ce`` the student's mean cross-entropy on its labels. ``kd`` and ``ce`` are
    detached; backpropagate ``total``. ``student_vocab`` / ``teacher_vocab`` cut each head to its
    tokenizer's real tokens (padding rows of an embedding are no tokens).

    With ``top_k`` > 0 the teacher's side of each group is its top-k plus the rest
    (:func:`group_divergence_top_k`, ``teacher_to_student`` for gold); ``cached`` = (ids ``[G, k]``,
    log-probs ``[G, k + 1]``) gives that side for the G groups in order, from a teacher cache: the
    teacher's hidden states and head are then not used (pass None).
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment: {alignment!r} is not one of {', '.join(ALIGNMENTS)}")
    if not temperature > 0 or not 0.0 <= alpha <= 1.0 or chunk_size < 1:
        raise ValueError(f"temperature {temperature} must be > 0, alpha {alpha} in [0, 1], chunk_size {chunk_size} >= 1")
    device = student_hidden.device
    count = trained_tokens if trained_tokens is not None else int((labels != IGNORE_INDEX).sum())
    count = max(count, 1)
    s_head = as_head(student_head)
    t_head: OutputHead | None = None
    if cached is None:
        if teacher_hidden is None or teacher_head is None:
            raise ValueError("the teacher's hidden states and head are needed without a cache")
        teacher_hidden = teacher_hidden.detach()
        t_head = as_head(teacher_head)
        t_head = OutputHead(t_head.weight.detach(), None if t_head.bias is None else t_head.bias.detach(), t_head.scale, t_head.softcap)
    elif cached[0].shape[0] != student_index.base.numel():
        raise ValueError(
            f"teacher cache rows ({cached[0].shape[0]}) do not match the batch's aligned groups ({student_index.base.numel()})"
        )
    if cached is not None:
        top_k = int(cached[0].shape[1])
        cached = (cached[0].to(device).long(), cached[1].to(device).float())
    if top_k and alignment == "gold" and teacher_to_student is None:
        raise ValueError("alignment gold with top_k needs teacher_to_student")
    if teacher_to_student is not None:
        teacher_to_student = teacher_to_student.to(device)
    student_index, teacher_index = student_index.to(device), teacher_index.to(device)
    if columns is not None:
        columns = columns.to(device)

    def chunk_divergence(s_rows: torch.Tensor, s_idx: GroupIndex, t_idx: GroupIndex, start: int, stop: int) -> torch.Tensor:
        s_logp = merged_log_probs(lambda pos: s_head.logits(s_rows[pos], student_vocab), s_idx, temperature)
        if cached is not None:
            return group_divergence_top_k(alignment, s_logp, cached[0][start:stop], cached[1][start:stop], teacher_to_student).sum()
        assert t_head is not None and teacher_hidden is not None
        with torch.no_grad():
            t_logp = merged_log_probs(lambda pos: t_head.logits(teacher_hidden[pos], teacher_vocab), t_idx, temperature)
            if top_k:
                t_ids, t_lp = teacher_top_k_groups(t_logp, top_k)
        if top_k:
            return group_divergence_top_k(alignment, s_logp, t_ids, t_lp, teacher_to_student).sum()
        return group_divergence(alignment, s_logp, t_logp, columns, unmatched_weight).sum()

    kd_sum = torch.zeros((), dtype=torch.promote_types(student_hidden.dtype, torch.float32), device=device)
    groups = student_index.base.numel()
    # A term with weight 0 is still reported, computed without a graph.
    with torch.set_grad_enabled(torch.is_grad_enabled() and alpha > 0):
        for start in range(0, groups, chunk_size):
            stop = min(start + chunk_size, groups)
            s_idx, t_idx = student_index.chunk(start, stop), teacher_index.chunk(start, stop)
            # Only the rows the chunk reads enter the checkpoint, renumbered.
            needed = torch.cat([s_idx.base, s_idx.extra_pos])
            rows, where = torch.unique(needed, return_inverse=True)
            local = GroupIndex(where[: s_idx.base.numel()], s_idx.extra_group, where[s_idx.base.numel() :], s_idx.extra_token)
            kd_sum = kd_sum + checkpoint(chunk_divergence, student_hidden[rows], local, t_idx, start, stop, use_reentrant=False)
    with torch.set_grad_enabled(torch.is_grad_enabled() and alpha < 1):
        ce_sum = _ce_sum(student_hidden, s_head, student_vocab or s_head.weight.shape[0], labels, chunk_size)
    kd = kd_sum * (temperature**2 / count)
    ce = ce_sum / max(int((labels != IGNORE_INDEX).sum()), 1)
    total = alpha * kd + (1.0 - alpha) * ce
    return LossParts(total, kd.detach(), ce.detach())


def cross_kd_loss_reference(
    student_logits: Sequence[torch.Tensor],
    teacher_logits: Sequence[torch.Tensor],
    student_ids: Sequence[Sequence[int]],
    teacher_ids: Sequence[Sequence[int]],
    groups: Sequence[Sequence[AlignedGroup]],
    labels: Sequence[Sequence[int]],
    *,
    alignment: str = "gold",
    shared: SharedTokens | None = None,
    temperature: float = 1.0,
    alpha: float = 0.5,
    unmatched_weight: float = 1.0,
) -> LossParts:
    """The same loss written plainly from per-row full logits ``[L, V]`` (unshifted: position ``i``
    predicts token ``i + 1``) and unshifted ``labels``, one group and one token at a time."""
    kd_sum = torch.zeros((), dtype=torch.float64)
    ce_sum = torch.zeros((), dtype=torch.float64)
    counted = 0
    for zs, zt, s_ids, t_ids, row_groups, row_labels in zip(student_logits, teacher_logits, student_ids, teacher_ids, groups, labels):
        ls = torch.log_softmax(zs.double() / temperature, -1)
        lt = torch.log_softmax(zt.double() / temperature, -1)
        for g in row_groups:
            s = ls[g.s_start - 1] + sum((ls[k - 1, s_ids[k]] for k in range(g.s_start + 1, g.s_end)), torch.zeros((), dtype=torch.float64))
            t = lt[g.t_start - 1] + sum((lt[k - 1, t_ids[k]] for k in range(g.t_start + 1, g.t_end)), torch.zeros((), dtype=torch.float64))
            p_s, p_t = s.exp(), t.exp()
            if alignment == "uld":
                d = _plain_sorted_l1(p_s, p_t)
            else:
                assert shared is not None
                ti, si = list(shared.teacher_ids), list(shared.student_ids)
                pt, ps_, lt_, ls_ = p_t[ti], p_s[si], t[ti], s[si]
                d = (torch.where(pt > 0, pt * (lt_ - ls_), torch.zeros_like(pt)) - pt + ps_).sum()
                t_other = [i for i in range(len(p_t)) if i not in set(shared.teacher_ids)]
                s_other = [i for i in range(len(p_s)) if i not in set(shared.student_ids)]
                if t_other or s_other:
                    d = d + unmatched_weight * _plain_sorted_l1(p_s[s_other] if s_other else p_s[:0], p_t[t_other] if t_other else p_t[:0])
            kd_sum = kd_sum + d
        for i in range(1, len(s_ids)):
            if row_labels[i] != IGNORE_INDEX:
                ce_sum = ce_sum - torch.log_softmax(zs[i - 1].double(), -1)[row_labels[i]]
                counted += 1
    kd = kd_sum * temperature**2 / max(counted, 1)
    ce = ce_sum / max(counted, 1)
    return LossParts(alpha * kd + (1 - alpha) * ce, kd, ce)


def _plain_sorted_l1(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Sorted L1 written out: both sorted, the shorter extended by zeros, absolute differences summed."""
    ps, qs = p.sort(descending=True).values, q.sort(descending=True).values
    width = max(len(ps), len(qs))
    ps = torch.cat([ps, ps.new_zeros(width - len(ps))])
    qs = torch.cat([qs, qs.new_zeros(width - len(qs))])
    return (ps - qs).abs().sum()
