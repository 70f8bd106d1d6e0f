"""Lining up two tokenizations of the same text (distill_gui.core.token_alignment) on hand-made strings."""

from __future__ import annotations

import pytest
import tiny_models

from distill_gui.core.token_alignment import (
    TokenSpans,
    align,
    align_row,
    identity_row,
    shared_tokens,
    spans_of_ids,
    spans_of_text,
)


@pytest.fixture(scope="module")
def pair():
    return tiny_models.build_tokenizer(300), tiny_models.build_tokenizer(420, digits=False)


def _pieces(side: TokenSpans, start: int, end: int) -> str:
    return side.text[side.spans[start][0] : side.spans[end - 1][1]]


def test_hand_made_spans_align_on_common_cuts():
    text = "ab cd"
    student = TokenSpans(text, ((0, 1), (1, 2), (2, 5)), (True, True, True))  # "a" "b" " cd"
    teacher = TokenSpans(text, ((0, 2), (3, 4), (4, 5)), (True, True, True))  # "ab" "c" "d"  (offsets leave out the space)
    groups = align(student, teacher)
    assert [(g.s_start, g.s_end, g.t_start, g.t_end) for g in groups] == [(0, 2, 0, 1), (2, 3, 1, 3)]


def test_a_character_split_over_byte_tokens_is_never_cut():
    text = "x🙂y"
    # student: the emoji in two byte tokens with the same character span; teacher: in one token
    student = TokenSpans(text, ((0, 1), (1, 2), (1, 2), (2, 3)), (True, False, True, True))
    teacher = TokenSpans(text, ((0, 1), (1, 2), (2, 3)), (True, True, True))
    groups = align(student, teacher)
    assert [(g.s_start, g.s_end, g.t_start, g.t_end) for g in groups] == [(0, 1, 0, 1), (1, 3, 1, 2), (3, 4, 2, 3)]


@pytest.mark.parametrize(
    "text",
    [
        "Question: What is 12 plus 7? Answer: 19",
        "Ünïcödé 🙂 中文 text",
        "two  spaces\tand\nnew lines  ",
        "<|user|>Hello!</s><|assistant|>Hi</s>",
    ],
)
def test_real_tokenizers_groups_cover_the_same_text(pair, text):
    a, b = pair
    ids = a(text, add_special_tokens=False)["input_ids"]
    s = spans_of_ids(a, ids)
    assert s.text == text
    t_ids, t = spans_of_text(b, text)
    groups = align(s, t)
    assert groups[0].s_start == 0 and groups[0].t_start == 0
    assert groups[-1].s_end == len(ids) and groups[-1].t_end == len(t_ids)
    for prev, nxt in zip(groups, groups[1:]):
        assert prev.s_end == nxt.s_start and prev.t_end == nxt.t_start
    for g in groups:  # both sides decode to the same text
        assert a.decode(ids[g.s_start : g.s_end]) == b.decode(t_ids[g.t_start : g.t_end])
    # different tokenizers: somewhere a group holds more than one token on one side
    if text.startswith("Question"):
        assert any(g.s_end - g.s_start != g.t_end - g.t_start for g in groups)


def test_special_tokens_are_one_token_and_align(pair):
    a, b = pair
    text = "<|user|>Hi</s>"
    ids = a(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == a.convert_tokens_to_ids("<|user|>") and ids[-1] == a.eos_token_id
    groups = align(spans_of_ids(a, ids), spans_of_text(b, text)[1])
    assert (0, 1) == (groups[0].s_start, groups[0].s_end) and groups[0].t_end == 1
    assert groups[-1].s_end - groups[-1].s_start == 1 and groups[-1].t_end - groups[-1].t_start == 1


def test_ids_tokenized_in_parts_fall_back_to_decoding_prefixes(pair):
    a, _ = pair
    # "Know" as single letters, then an emoji in its four byte tokens: not how the tokenizer splits the text
    ids = a.convert_tokens_to_ids(["K", "n", "o", "w", "Ġ", "ð", "Ł", "Ļ", "Ĥ", "!"])
    assert a("Know 🙂!", add_special_tokens=False)["input_ids"] != ids
    spans = spans_of_ids(a, ids)
    assert spans.text == "Know 🙂!"
    assert [spans.text[s:e] for s, e in spans.spans] == ["K", "n", "o", "w", " ", "", "", "", "🙂", "!"]
    assert spans.cut_after == (True, True, True, True, True, False, False, False, True, True)


def test_align_row_keeps_only_trained_groups_with_context(pair):
    a, b = pair
    prompt, completion = (
        a("Question: 12 plus 7?", add_special_tokens=False)["input_ids"],
        a(" Answer: 19</s>", add_special_tokens=False)["input_ids"],
    )
    ids = prompt + completion
    labels = [-100] * len(prompt) + completion
    row = align_row(a, b, ids, labels, skip_ids=frozenset(a.all_special_ids))
    assert row.trained_tokens == len(completion)
    assert row.groups and all(g.s_start >= len(prompt) and g.t_start >= 1 for g in row.groups)
    assert all(ids[g.s_start] != a.eos_token_id for g in row.groups)  # the EOS is not compared with the teacher's "</s>" text
    assert b.decode(list(row.teacher_ids)) == a.decode(ids)


def test_identity_row_and_shared_tokens(pair):
    a, b = pair
    row = identity_row([5, 6, 7, 8], [-100, -100, 7, 8])
    assert [(g.s_start, g.t_start) for g in row.groups] == [(2, 2), (3, 3)] and row.trained_tokens == 2
    shared = shared_tokens(b, a, len(b), len(a))
    va, vb = a.get_vocab(), b.get_vocab()
    assert len(shared.teacher_ids) == len(va.keys() & vb.keys())
    inv_b = {v: k for k, v in vb.items()}
    assert all(va[inv_b[t]] == s for t, s in zip(shared.teacher_ids, shared.student_ids))
