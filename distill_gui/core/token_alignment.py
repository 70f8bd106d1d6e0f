"""Lining up two tokenizations of the same text: which teacher tokens cover which student tokens.

Cross-tokenizer KD (:mod:`distill_gui.core.methods.cross_kd`) decodes the student's tokens to text,
tokenizes that text with the teacher's tokenizer, and cuts both token sequences where both have a
token boundary at the same place in the text. Each piece between two common cuts is an *aligned
group*: student tokens ``[s_start, s_end)`` and teacher tokens ``[t_start, t_end)`` covering the same
characters (TRL's GOLD trainer aligns by byte offsets the same way).

Character offsets come from the fast tokenizers' offset mapping. A cut between two tokens is only a
cut where the two tokens do not overlap: byte-level tokenizers give every byte token of a character
split across tokens (an emoji) the same character span, and such a character is never cut in two.
Gaps between tokens (offsets that leave out a leading space) are allowed: two cuts match when their
gaps touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from distill_gui.core.errors import UserError


class AlignmentError(UserError):
    """The two tokenizers cannot be lined up on the data (named in the message)."""


@dataclass(frozen=True)
class TokenSpans:
    """A token sequence placed in its text: ``spans[i]`` = (start, end) characters of token ``i``;
    ``cut_after[i]``: the text may be cut between token ``i`` and ``i + 1`` (no character is shared)."""

    text: str
    spans: tuple[tuple[int, int], ...]
    cut_after: tuple[bool, ...]


@dataclass(frozen=True)
class AlignedGroup:
    """Student tokens ``[s_start, s_end)`` and teacher tokens ``[t_start, t_end)`` covering the same text."""

    s_start: int
    s_end: int
    t_start: int
    t_end: int


def _clean_cuts(spans: Sequence[tuple[int, int]]) -> tuple[bool, ...]:
    return tuple(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)) + (True,) if spans else ()


def spans_of_text(tokenizer: Any, text: str) -> tuple[list[int], TokenSpans]:
    """Tokenize ``text`` (no special tokens added) with its character offsets."""
    if not getattr(tokenizer, "is_fast", False):
        raise AlignmentError(
            f"{type(tokenizer).__name__}: cross-tokenizer KD needs a fast (Rust) tokenizer, which gives character "
            "offsets; save the model with its tokenizer.json"
        )
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = tuple((int(a), int(b)) for a, b in enc["offset_mapping"])
    return list(enc["input_ids"]), TokenSpans(text, spans, _clean_cuts(spans))


def spans_of_ids(tokenizer: Any, ids: Sequence[int]) -> TokenSpans:
    """Where each of ``ids`` sits in their decoded text.

    The text is re-tokenized with offsets; when that gives other ids (the sequence was tokenized in
    parts), each token's end is found by decoding growing prefixes, and a cut is allowed only after a
    prefix that decodes to the start of the text (a token ending inside a character is never cut after).
    """
    ids = [int(i) for i in ids]
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    again, spans = spans_of_text(tokenizer, text)
    if again == ids:
        return spans
    ends: list[int] = []
    clean: list[bool] = []
    end = 0
    for i in range(len(ids)):
        prefix = tokenizer.decode(ids[: i + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        whole = text.startswith(prefix)
        if whole:
            end = len(prefix)
        ends.append(end)
        clean.append(whole)
    starts = [0] + ends[:-1]
    clean[-1] = True
    return TokenSpans(text, tuple(zip(starts, ends)), tuple(clean))


def align(student: TokenSpans, teacher: TokenSpans) -> list[AlignedGroup]:
    """The aligned groups of two tokenizations of the same text, in order, covering both sequences.

    A common cut is a place where both sides may be cut and their gaps touch; the groups are the
    stretches between consecutive common cuts (the last one runs to the ends of both sequences).
    """
    if student.text != teacher.text:
        raise ValueError("align: the two tokenizations are of different texts")

    def cuts(side: TokenSpans) -> list[tuple[int, int, int]]:
        out = []
        for i, ok in enumerate(side.cut_after[:-1]):
            if ok:
                out.append((side.spans[i][1], side.spans[i + 1][0], i + 1))  # (gap start, gap end, next token)
        return out

    s_cuts, t_cuts = cuts(student), cuts(teacher)
    groups: list[AlignedGroup] = []
    s_prev = t_prev = 0
    i = j = 0
    while i < len(s_cuts) and j < len(t_cuts):
        (s_lo, s_hi, s_next), (t_lo, t_hi, t_next) = s_cuts[i], t_cuts[j]
        if s_hi < t_lo:
            i += 1
        elif t_hi < s_lo:
            j += 1
        else:
            if s_next > s_prev and t_next > t_prev:
                groups.append(AlignedGroup(s_prev, s_next, t_prev, t_next))
                s_prev, t_prev = s_next, t_next
            i += 1
            j += 1
    n_s, n_t = len(student.spans), len(teacher.spans)
    if s_prev < n_s or t_prev < n_t:
        groups.append(AlignedGroup(s_prev, n_s, t_prev, n_t))
    return groups


@dataclass(frozen=True)
class RowAlignment:
    """One training row seen by both models: the teacher's input ids and the groups the loss compares.

    Every group here has a predecessor token on both sides (``s_start >= 1``, ``t_start >= 1``) and only
    trained student tokens, so both models predicted its text from the same preceding text.
    """

    teacher_ids: tuple[int, ...]
    groups: tuple[AlignedGroup, ...]
    trained_tokens: int
    """The row's trained student tokens (labels not -100 after the shift), aligned or not."""


def teacher_prefix(teacher_tokenizer: Any) -> list[int]:
    """The ids the teacher's tokenizer puts before a text by itself (a BOS token), so the first token has context."""
    plain = teacher_tokenizer("a", add_special_tokens=False)["input_ids"]
    full = teacher_tokenizer("a", add_special_tokens=True)["input_ids"]
    if len(full) > len(plain) and full[-len(plain) :] == plain:
        return list(full[: len(full) - len(plain)])
    return []


def align_row(
    student_tokenizer: Any,
    teacher_tokenizer: Any,
    input_ids: Sequence[int],
    labels: Sequence[int],
    prefix: Sequence[int] = (),
    skip_ids: frozenset[int] = frozenset(),
) -> RowAlignment:
    """Align one row: the student's ``input_ids`` (``labels`` -100 where not trained) against the teacher's
    tokenization of the same text, after the teacher's ``prefix`` ids. Groups holding a student token in
    ``skip_ids`` (its special tokens, whose text the teacher reads as plain characters) are left out."""
    ids = [int(i) for i in input_ids]
    labels = [int(v) for v in labels]
    s_spans = spans_of_ids(student_tokenizer, ids)
    t_ids, t_spans = spans_of_text(teacher_tokenizer, s_spans.text)
    prefix = [int(i) for i in prefix]
    if prefix:
        t_spans = TokenSpans(t_spans.text, ((0, 0),) * len(prefix) + t_spans.spans, (False,) * len(prefix) + t_spans.cut_after)
    trained = [i >= 1 and labels[i] != -100 for i in range(len(ids))]
    groups = tuple(
        g
        for g in align(s_spans, t_spans)
        if g.s_start >= 1
        and g.t_start >= 1
        and g.t_end > g.t_start
        and all(trained[g.s_start : g.s_end])
        and not any(ids[k] in skip_ids for k in range(g.s_start, g.s_end))
    )
    return RowAlignment(tuple(prefix + t_ids), groups, sum(trained))


def identity_row(input_ids: Sequence[int], labels: Sequence[int]) -> RowAlignment:
    """The alignment of a pair that shares its tokenizer: every trained token is its own group."""
    ids = [int(i) for i in input_ids]
    groups = tuple(AlignedGroup(i, i + 1, i, i + 1) for i in range(1, len(ids)) if int(labels[i]) != -100)
    return RowAlignment(tuple(ids), groups, len(groups))


@dataclass(frozen=True)
class SharedTokens:
    """Tokens both vocabularies hold with exactly the same string: ``teacher_ids[i]`` is ``student_ids[i]``."""

    teacher_ids: tuple[int, ...]
    student_ids: tuple[int, ...]


def shared_tokens(teacher_tokenizer: Any, student_tokenizer: Any, teacher_rows: int, student_rows: int) -> SharedTokens:
    """The exactly shared tokens of two vocabularies (ids below each model's logit rows), by teacher id."""
    s_vocab = student_tokenizer.get_vocab()
    pairs = sorted(
        (t_id, s_vocab[tok])
        for tok, t_id in teacher_tokenizer.get_vocab().items()
        if tok in s_vocab and t_id < teacher_rows and s_vocab[tok] < student_rows
    )
    return SharedTokens(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))
